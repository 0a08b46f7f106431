-- A channel's reference for a transfer-out request is unique only per person (two people's
-- requests may carry the same number): the request is found by (person, reference), kept
-- here; the transfer's own id stays unique per (direction, origin) for partners and offices.
ALTER TABLE transfers ADD COLUMN IF NOT EXISTS channel_ref text;
UPDATE transfers SET channel_ref = transfer_id
    WHERE direction = 'out' AND trigger = 'application' AND channel_ref IS NULL;
CREATE INDEX IF NOT EXISTS transfers_channel_ref ON transfers (channel_ref)
    WHERE channel_ref IS NOT NULL;
