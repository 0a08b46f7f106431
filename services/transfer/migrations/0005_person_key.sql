-- Transfer's tables keep no resident ID in clear: a person's rows are found by a keyed hash
-- of the ID (person_key, the same in every table) and the ID is kept sealed (person_ref): to
-- re-hash under a new key, and to name the person in the events a transfer emits from its
-- row. The worker seals person_ref and fills person_key at its start, before consuming.
ALTER TABLE insured_view ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE insured_view ADD COLUMN IF NOT EXISTS person_key text;
UPDATE insured_view SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE insured_view ALTER COLUMN person_ref SET NOT NULL;
-- Its primary key goes with it; a key NULL until the worker's start fills it cannot be one,
-- so one row per person is kept by a unique index.
ALTER TABLE insured_view DROP COLUMN IF EXISTS person_id;
CREATE UNIQUE INDEX IF NOT EXISTS insured_view_person_key ON insured_view (person_key);

ALTER TABLE transfers ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE transfers ADD COLUMN IF NOT EXISTS person_key text;
UPDATE transfers SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE transfers ALTER COLUMN person_ref SET NOT NULL;
-- Its index transfers_person goes with it.
ALTER TABLE transfers DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS transfers_person_key ON transfers (person_key);
