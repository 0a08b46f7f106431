-- Reimbursement keeps no resident ID in clear: every table finds a person by a keyed hash of
-- the ID (person_key, one hashing purpose in all tables) and keeps the ID sealed (person_ref)
-- for re-hashing under a new key and for the jobs that must name the person. The worker seals
-- person_ref and fills person_key at its start, before consuming. A primary key cannot hold
-- person_key (NULL until then): unique indexes take its place.

-- A birth waits for the wage base of the employer it was judged under; kept on the birth so
-- the wage base finds it without joining two tables on a hash that a rotation re-hashes one
-- table at a time.
ALTER TABLE births ADD COLUMN IF NOT EXISTS employer_code text;
UPDATE births b SET employer_code = e.employer_code FROM employments e
    WHERE e.person_id = b.person_id AND b.state = 'waiting_for_wage_base'
    AND b.employer_code IS NULL;

ALTER TABLE insured_view ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE insured_view ADD COLUMN IF NOT EXISTS person_key text;
UPDATE insured_view SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE insured_view ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE insured_view DROP COLUMN IF EXISTS person_id;  -- its primary key goes with it
CREATE UNIQUE INDEX IF NOT EXISTS insured_view_person_key ON insured_view (person_key);

ALTER TABLE claims ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE claims ADD COLUMN IF NOT EXISTS person_key text;
UPDATE claims SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE claims ALTER COLUMN person_ref SET NOT NULL;
-- The primary key (person_id, claim_id) and claims_person go with it.
ALTER TABLE claims DROP COLUMN IF EXISTS person_id;
CREATE UNIQUE INDEX IF NOT EXISTS claims_person_key_claim ON claims (person_key, claim_id);

-- Nullable as before: history rows of 0008's time whose claim was not found kept none.
ALTER TABLE claim_history ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE claim_history ADD COLUMN IF NOT EXISTS person_key text;
UPDATE claim_history SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE claim_history DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS claim_history_person_key_claim
    ON claim_history (person_key, claim_id);

ALTER TABLE filings_view ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE filings_view ADD COLUMN IF NOT EXISTS person_key text;
UPDATE filings_view SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE filings_view ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE filings_view DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS filings_view_person_key ON filings_view (person_key);

ALTER TABLE coverage_view ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE coverage_view ADD COLUMN IF NOT EXISTS person_key text;
UPDATE coverage_view SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE coverage_view ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE coverage_view DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS coverage_view_person_key ON coverage_view (person_key);

-- The record kept while it awaits the declaration names the person too: it is sealed
-- (proactive_records.record) by the worker at start.
ALTER TABLE proactive_records ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE proactive_records ADD COLUMN IF NOT EXISTS person_key text;
UPDATE proactive_records SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE proactive_records ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE proactive_records DROP COLUMN IF EXISTS person_id;
-- Its claim is joined on the claim id (agency-started claims are unique by it).
CREATE INDEX IF NOT EXISTS proactive_records_claim ON proactive_records (claim_id);

ALTER TABLE direct_settlements ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE direct_settlements ADD COLUMN IF NOT EXISTS person_key text;
UPDATE direct_settlements SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE direct_settlements ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE direct_settlements DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS direct_settlements_person_key
    ON direct_settlements (person_key, settled_on);

ALTER TABLE employments ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE employments ADD COLUMN IF NOT EXISTS person_key text;
UPDATE employments SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE employments ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE employments DROP COLUMN IF EXISTS person_id;  -- its primary key goes with it
CREATE UNIQUE INDEX IF NOT EXISTS employments_person_key ON employments (person_key);

ALTER TABLE births ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE births ADD COLUMN IF NOT EXISTS person_key text;
UPDATE births SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE births ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE births DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS births_person_key ON births (person_key);
CREATE INDEX IF NOT EXISTS births_waiting_employer ON births (employer_code, birth_date)
    WHERE state = 'waiting_for_wage_base';
