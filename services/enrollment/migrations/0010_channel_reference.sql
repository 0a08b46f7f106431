-- A channel's reference is unique per person only: another person's application, filing or
-- case under a
-- number already used here gets an id of its own, and keeps the number it was sent under
-- (channel_ref) so the person's, staff's and the tax authority's later messages under that
-- number still find it.
ALTER TABLE filings ADD COLUMN IF NOT EXISTS channel_ref text;
ALTER TABLE cases ADD COLUMN IF NOT EXISTS channel_ref text;
CREATE INDEX IF NOT EXISTS filings_channel_ref ON filings (channel_ref)
    WHERE channel_ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_channel_ref ON cases (channel_ref)
    WHERE channel_ref IS NOT NULL;
ALTER TABLE applications ADD COLUMN IF NOT EXISTS channel_ref text;
CREATE INDEX IF NOT EXISTS applications_channel_ref ON applications (channel_ref)
    WHERE channel_ref IS NOT NULL;
