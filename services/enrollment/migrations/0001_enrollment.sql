-- Enrollment: insured persons, their applications, payments and status history.
CREATE TABLE persons (
    person_id      text PRIMARY KEY,
    name           text NOT NULL,
    mobile         text NOT NULL,
    email          text,
    insurance_type text NOT NULL,
    status         text NOT NULL,
    paid_until     date,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE applications (
    application_id text PRIMARY KEY,
    person_id      text NOT NULL,
    insurance_type text NOT NULL,
    channel        text NOT NULL,
    state          text NOT NULL,
    reasons        jsonb NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX applications_person ON applications (person_id, created_at);

-- Every state change of a person or an application, with the event that caused it.
CREATE TABLE history (
    id          bigserial PRIMARY KEY,
    person_id   text NOT NULL,
    reference   text NOT NULL,
    what        text NOT NULL,
    detail      jsonb NOT NULL,
    cause_id    text NOT NULL,
    cause_type  text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX history_person ON history (person_id, id);
CREATE INDEX history_reference ON history (reference, id);

-- Idempotent by payment_ref; parked payments stay here, visible, until matched.
CREATE TABLE payments (
    payment_ref    text PRIMARY KEY,
    person_id      text NOT NULL,
    application_id text,
    period_start   date NOT NULL,
    period_end     date NOT NULL,
    amount_fen     bigint NOT NULL,
    state          text NOT NULL,
    reason         text,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_person ON payments (person_id);
