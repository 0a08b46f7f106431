-- Reimbursement: insured status from enrollment, claims and each claim's history.
CREATE TABLE insured_view (
    person_id      text PRIMARY KEY,
    insurance_type text NOT NULL,
    status         text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE claims (
    claim_id         text PRIMARY KEY,
    person_id        text NOT NULL,
    invoice_no       text NOT NULL,
    institution_code text NOT NULL,
    expense_date     date NOT NULL,
    amount_fen       bigint NOT NULL,
    stage            text NOT NULL,
    reasons          jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claims_person ON claims (person_id);
-- One accepted claim per receipt; rejected ones do not hold the receipt.
CREATE UNIQUE INDEX claims_receipt ON claims (invoice_no, institution_code)
    WHERE stage <> 'rejected';

CREATE TABLE claim_history (
    id          bigserial PRIMARY KEY,
    claim_id    text NOT NULL,
    stage       text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    cause_id    text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
