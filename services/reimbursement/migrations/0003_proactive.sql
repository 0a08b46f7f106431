-- Proactive reimbursement: each outage record once, and a running summary per institution.
CREATE TABLE proactive_records (
    record_id        text PRIMARY KEY,
    batch_id         text NOT NULL,
    institution_code text NOT NULL,
    person_id        text NOT NULL,
    accepted         boolean NOT NULL,
    claim_id         text,
    reason           text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX proactive_institution ON proactive_records (institution_code);
