-- Health and contact data sealed at rest by the application (shared/db/sealed.py): the
-- columns stay text/jsonb and hold "enc:<key id>:..." values; existing plaintext rows are
-- sealed by the worker at its start (idempotent, batched). A sealed disease differs every
-- time it is written, so look-ups and uniqueness go by its keyed hash instead.
ALTER TABLE chronic_recognitions ADD COLUMN IF NOT EXISTS disease_key text;
ALTER TABLE chronic_recognitions DROP CONSTRAINT IF EXISTS chronic_recognitions_pkey;
CREATE UNIQUE INDEX IF NOT EXISTS chronic_recognitions_disease_key
    ON chronic_recognitions (person_id, disease_key);
CREATE INDEX IF NOT EXISTS chronic_recognitions_person ON chronic_recognitions (person_id);
