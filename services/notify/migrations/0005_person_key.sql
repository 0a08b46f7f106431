-- The contact directory keeps no resident ID in clear: a person's contact data is found by
-- a keyed hash of the ID (person_key); the ID is kept sealed (person_ref) for re-hashing
-- under a new key. The worker seals person_ref and fills person_key at its start.
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE contacts ADD COLUMN IF NOT EXISTS person_key text;
UPDATE contacts SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE contacts ALTER COLUMN person_ref SET NOT NULL;
ALTER TABLE contacts DROP COLUMN IF EXISTS person_id;
CREATE UNIQUE INDEX IF NOT EXISTS contacts_person_key ON contacts (person_key);
