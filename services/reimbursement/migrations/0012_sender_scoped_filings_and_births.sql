-- Numbers from outside senders are scoped by their sender: a filing is the person's (two
-- people's filings may share a number), a birth is the hospital's that recorded it (two
-- hospitals may both send birth 0001). The primary keys on the bare numbers go; unique
-- indexes on the scoped pairs take their place (person_key is filled by the worker's start).
ALTER TABLE filings_view DROP CONSTRAINT IF EXISTS filings_view_pkey;
CREATE UNIQUE INDEX IF NOT EXISTS filings_view_person_filing
    ON filings_view (person_key, filing_id);

-- Births recorded before the hospital was named keep an empty institution.
ALTER TABLE births ADD COLUMN IF NOT EXISTS institution_code text;
UPDATE births SET institution_code = '' WHERE institution_code IS NULL;
ALTER TABLE births ALTER COLUMN institution_code SET NOT NULL;
ALTER TABLE births DROP CONSTRAINT IF EXISTS births_pkey;
CREATE UNIQUE INDEX IF NOT EXISTS births_institution_birth ON births (institution_code, birth_id);
