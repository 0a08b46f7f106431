-- A receipt names the handset it reports on (the deliver_sm's source address): kept as a keyed
-- hash, it links a receipt whose submit_sm_resp was lost (its message id known to nobody here)
-- to the one 'unknown' SMS to that handset, so the reconciliation can tell it went out.
ALTER TABLE sms_receipts ADD COLUMN IF NOT EXISTS handset_key text;
CREATE INDEX IF NOT EXISTS sms_receipts_handset ON sms_receipts (handset_key, received_at)
    WHERE handset_key IS NOT NULL;
