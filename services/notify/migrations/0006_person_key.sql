-- Deliveries and preferences keep no resident ID in clear, like the contact directory: a
-- person's rows are found by a keyed hash of the ID (person_key) and the ID is kept sealed
-- (person_ref): to re-hash under a new key, to bind a message's sealed values to its person,
-- and to key the events a sent message emits. The worker seals person_ref and fills
-- person_key at its start, before consuming.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS person_key text;
UPDATE deliveries SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE deliveries ALTER COLUMN person_ref SET NOT NULL;
-- Its index deliveries_person goes with it.
ALTER TABLE deliveries DROP COLUMN IF EXISTS person_id;
CREATE INDEX IF NOT EXISTS deliveries_person_key ON deliveries (person_key, id);

ALTER TABLE preferences ADD COLUMN IF NOT EXISTS person_ref text;
ALTER TABLE preferences ADD COLUMN IF NOT EXISTS person_key text;
UPDATE preferences SET person_ref = person_id WHERE person_ref IS NULL;
ALTER TABLE preferences ALTER COLUMN person_ref SET NOT NULL;
-- Its primary key goes with it; a key NULL until the worker's start fills it cannot be one,
-- so one row per person is kept by a unique index.
ALTER TABLE preferences DROP COLUMN IF EXISTS person_id;
CREATE UNIQUE INDEX IF NOT EXISTS preferences_person_key ON preferences (person_key);

-- The contact directory's hash was bound to its own table; it now takes the one resident-ID
-- hash every table uses (a person has the same person_key in each), filled again by the
-- worker's start from the sealed ID it keeps.
UPDATE contacts SET person_key = NULL;
