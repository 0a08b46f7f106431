-- Requests the rules refused (a claim resubmitted while still under review, a stage decision
-- out of order, a payment result for no outstanding payment), per person: the refusal event
-- alone leaves with the outbox; the person's progress lists them as enrollment's do.
CREATE TABLE IF NOT EXISTS refused_requests (
    id           bigserial PRIMARY KEY,
    person_ref   text NOT NULL,
    person_key   text,
    reference    text NOT NULL,
    request_type text NOT NULL,
    rule         text NOT NULL,
    reason       text NOT NULL,
    cause_id     text NOT NULL,
    refused_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS refused_requests_person_key ON refused_requests (person_key, id);
