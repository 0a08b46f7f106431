-- Contact data and message texts sealed at rest by the application (shared/db/sealed.py);
-- existing plaintext rows are sealed by the worker at its start (idempotent, batched). A
-- sealed recipient differs every time it is written, so "one message per event, channel and
-- recipient" is kept by the recipient's keyed hash instead.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS recipient_key text;
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_once
    ON deliveries (source_event_id, channel, recipient_key);
ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_source_event_id_channel_recipient_key;
