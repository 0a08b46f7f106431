-- Transfer: the insured status of each person as enrollment announced it, and transfers.
CREATE TABLE insured_view (
    person_id      text PRIMARY KEY,
    insurance_type text NOT NULL,
    status         text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transfers (
    transfer_id  text PRIMARY KEY,
    person_id    text NOT NULL,
    from_region  text NOT NULL,
    to_region    text NOT NULL,
    stage        text NOT NULL,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transfers_person ON transfers (person_id);

CREATE TABLE transfer_history (
    id          bigserial PRIMARY KEY,
    transfer_id text NOT NULL,
    stage       text NOT NULL,
    note        text,
    cause_id    text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
