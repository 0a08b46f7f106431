-- Chronic-disease recognitions keep no resident ID in clear: the person is found by a keyed
-- hash of the ID (person_key) and the ID is kept sealed (person_ref) for re-hashing under a
-- new key. The worker seals person_ref and fills person_key at its start, before consuming.
ALTER TABLE chronic_recognitions ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE chronic_recognitions ADD COLUMN IF NOT EXISTS person_key text;
UPDATE chronic_recognitions SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE chronic_recognitions ALTER COLUMN person_ref SET NOT NULL;
-- Its indexes (chronic_recognitions_disease_key, chronic_recognitions_person) go with it.
ALTER TABLE chronic_recognitions DROP COLUMN IF EXISTS person_id;
CREATE UNIQUE INDEX IF NOT EXISTS chronic_recognitions_person_disease
    ON chronic_recognitions (person_key, disease_key);
