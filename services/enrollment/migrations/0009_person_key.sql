-- No enrollment table keeps a resident ID in clear: every row about a person finds them by a
-- keyed hash of the ID (person_key, the same hash in every table) and keeps the ID sealed
-- (person_ref) for re-hashing under a new key and for the jobs that must name the person.
-- The IDs are copied here as they are; the worker seals them and fills the hashes at its
-- start, before consuming. Keys that were primary keys are unique indexes (a hash is NULL
-- until then).

-- History rows about the person as a whole named the person as their reference, and a lapse
-- named them in its cause id: both carry no ID from now on.
UPDATE history SET reference = '(person)' WHERE reference = person_id;
UPDATE history SET cause_id = 'lapse:' || split_part(cause_id, ':', 3)
    WHERE cause_id LIKE 'lapse:%' AND split_part(cause_id, ':', 2) = person_id;

ALTER TABLE persons ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE persons ADD COLUMN IF NOT EXISTS person_key text;
UPDATE persons SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE persons ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE persons DROP COLUMN IF EXISTS person_id;  -- and its primary key
CREATE UNIQUE INDEX IF NOT EXISTS persons_person_key ON persons (person_key);

ALTER TABLE applications ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE applications ADD COLUMN IF NOT EXISTS person_key text;
UPDATE applications SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE applications ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE applications DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS applications_person_key ON applications (person_key, created_at);

ALTER TABLE history ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE history ADD COLUMN IF NOT EXISTS person_key text;
UPDATE history SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE history ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE history DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS history_person_key ON history (person_key, id);

ALTER TABLE payments ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE payments ADD COLUMN IF NOT EXISTS person_key text;
UPDATE payments SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE payments ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE payments DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS payments_person_key ON payments (person_key);

-- A case's subject is a person (or, for a civil-servant case, an employer code: hashed and
-- sealed alike, so the column means one thing).
ALTER TABLE cases ADD COLUMN IF NOT EXISTS subject_ref text;
ALTER TABLE cases ADD COLUMN IF NOT EXISTS subject_key text;
UPDATE cases SET subject_ref = subject WHERE subject_ref IS NULL;
ALTER TABLE cases ALTER COLUMN subject_ref SET NOT NULL;
ALTER TABLE cases DROP COLUMN IF EXISTS subject;
CREATE INDEX IF NOT EXISTS cases_subject_key ON cases (subject_key);

ALTER TABLE filings ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE filings ADD COLUMN IF NOT EXISTS person_key text;
UPDATE filings SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE filings ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE filings DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS filings_person_key ON filings (person_key);

-- Both sides of a family-aid authorisation are resident IDs.
ALTER TABLE family_aid ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE family_aid ADD COLUMN IF NOT EXISTS person_key text;
ALTER TABLE family_aid ADD COLUMN IF NOT EXISTS relative_ref text;
ALTER TABLE family_aid ADD COLUMN IF NOT EXISTS relative_key text;
UPDATE family_aid SET person_ref = person_id WHERE person_ref IS NULL;
UPDATE family_aid SET relative_ref = relative_id WHERE relative_ref IS NULL;
ALTER TABLE family_aid ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE family_aid ALTER COLUMN relative_ref SET NOT NULL;
ALTER TABLE family_aid DROP COLUMN IF EXISTS person_id;
ALTER TABLE family_aid DROP COLUMN IF EXISTS relative_id;
CREATE INDEX IF NOT EXISTS family_aid_person_key ON family_aid (person_key);
CREATE INDEX IF NOT EXISTS family_aid_relative_key ON family_aid (relative_key);

ALTER TABLE scheduled_changes ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE scheduled_changes ADD COLUMN IF NOT EXISTS person_key text;
UPDATE scheduled_changes SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE scheduled_changes ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE scheduled_changes DROP COLUMN IF EXISTS person_id;

ALTER TABLE coverage_periods ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE coverage_periods ADD COLUMN IF NOT EXISTS person_key text;
UPDATE coverage_periods SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE coverage_periods ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE coverage_periods DROP COLUMN IF EXISTS person_id;  -- and its primary key
CREATE UNIQUE INDEX IF NOT EXISTS coverage_periods_person_key_seq
    ON coverage_periods (person_key, seq);

ALTER TABLE transfer_credits ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE transfer_credits ADD COLUMN IF NOT EXISTS person_key text;
UPDATE transfer_credits SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE transfer_credits ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE transfer_credits DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS transfer_credits_person_key ON transfer_credits (person_key);

-- A request waiting for a policy or for its application may name no person.
ALTER TABLE awaiting_policy ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE awaiting_policy ADD COLUMN IF NOT EXISTS person_key text;
UPDATE awaiting_policy SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE awaiting_policy DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS awaiting_policy_person_key ON awaiting_policy (person_key);

ALTER TABLE awaiting_application ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE awaiting_application ADD COLUMN IF NOT EXISTS person_key text;
UPDATE awaiting_application SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE awaiting_application DROP COLUMN IF EXISTS person_id;

ALTER TABLE refused_requests ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE refused_requests ADD COLUMN IF NOT EXISTS person_key text;
UPDATE refused_requests SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE refused_requests ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE refused_requests DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS refused_requests_person_key ON refused_requests (person_key, id);

-- Chronic-disease recognitions already keep the ID sealed, but hashed for their own table;
-- their hash is cleared so the worker's start fills the one every table shares.
UPDATE chronic_recognitions SET person_key = NULL;
