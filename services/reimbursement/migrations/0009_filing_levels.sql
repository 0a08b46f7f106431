-- Each filing's benefit level (temporary, long_term, referral; an emergency admission counts
-- as temporary), and the level that covered a claim: the policy may give each its own rule.
ALTER TABLE filings_view ADD COLUMN benefit_level text NOT NULL DEFAULT 'temporary';
ALTER TABLE claims ADD COLUMN filing_level text;
