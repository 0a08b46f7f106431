-- Requests the rules refused, per person (the refusal event alone leaves with the outbox):
-- the person's progress lists them with the rule; staff read the rule's own text.
CREATE TABLE refused_requests (
    id           bigserial PRIMARY KEY,
    person_id    text NOT NULL,
    reference    text NOT NULL,
    request_type text NOT NULL,
    rule         text NOT NULL,
    reason       text NOT NULL,
    cause_id     text NOT NULL,
    refused_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refused_requests_person ON refused_requests (person_id, id);
