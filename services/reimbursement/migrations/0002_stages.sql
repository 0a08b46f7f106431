-- Claims move through review stages and are paid; amounts are decided by policy.
ALTER TABLE claims ADD COLUMN version int NOT NULL DEFAULT 1;
ALTER TABLE claims ADD COLUMN eligible_fen bigint;
ALTER TABLE claims ADD COLUMN hospital_level int NOT NULL DEFAULT 3;
ALTER TABLE claims ADD COLUMN location text NOT NULL DEFAULT 'in_region';
ALTER TABLE claims ADD COLUMN tracking_no text;
ALTER TABLE claims ADD COLUMN payable_fen bigint;
ALTER TABLE claims ADD COLUMN calculation jsonb;
ALTER TABLE claims ADD COLUMN payment_attempts int NOT NULL DEFAULT 0;

-- Active remote-treatment filings, as enrollment announces them: they decide the location.
CREATE TABLE filings_view (
    filing_id      text PRIMARY KEY,
    person_id      text NOT NULL,
    treatment_area text NOT NULL,
    start_date     date NOT NULL,
    end_date       date,
    active         boolean NOT NULL
);
CREATE INDEX filings_view_person ON filings_view (person_id);
