-- Identifiers from outside are scoped by their sender: an outage record by (institution,
-- record id), a claim by (person, the channel's reference). Agency-declared outage windows.
-- Annual totals per benefit line, counting what was settled directly at the hospital.
ALTER TABLE proactive_records DROP CONSTRAINT proactive_records_pkey;
ALTER TABLE proactive_records ADD PRIMARY KEY (institution_code, record_id);
ALTER TABLE proactive_records ADD COLUMN route text NOT NULL DEFAULT 'proactive';
ALTER TABLE proactive_records ADD COLUMN outage_id text;
ALTER TABLE proactive_records ADD COLUMN pay_by date;
UPDATE proactive_records SET route = 'rejected' WHERE NOT accepted;

CREATE TABLE declared_outages (
    outage_id         text PRIMARY KEY,
    outage_from       date NOT NULL,
    outage_to         date NOT NULL,
    pay_by            date NOT NULL,
    institution_codes text[] NOT NULL DEFAULT '{}',
    declared_by       text NOT NULL,
    declared_at       timestamptz NOT NULL
);

ALTER TABLE claims DROP CONSTRAINT claims_pkey;
ALTER TABLE claims ADD PRIMARY KEY (person_id, claim_id);
CREATE INDEX claims_claim_id ON claims (claim_id);
ALTER TABLE claims ADD COLUMN channel text;
ALTER TABLE claims ADD COLUMN benefit_line text NOT NULL DEFAULT 'medical';
ALTER TABLE claims ADD COLUMN payee text NOT NULL DEFAULT 'insured';
UPDATE claims SET benefit_line = 'maternity_allowance' WHERE claim_id LIKE 'MAT-%';
UPDATE claims SET benefit_line = 'epidemic', payee = 'institution' WHERE claim_id LIKE 'EPI-%';

ALTER TABLE claim_history ADD COLUMN person_id text;
UPDATE claim_history h SET person_id = c.person_id FROM claims c WHERE c.claim_id = h.claim_id;
CREATE INDEX claim_history_claim ON claim_history (person_id, claim_id);

ALTER TABLE direct_settlements ADD COLUMN fund_paid_fen bigint NOT NULL DEFAULT 0;
ALTER TABLE direct_settlements ADD COLUMN deductible_used_fen bigint NOT NULL DEFAULT 0;
ALTER TABLE direct_settlements ADD COLUMN benefit_line text NOT NULL DEFAULT 'medical';
CREATE INDEX direct_settlements_person ON direct_settlements (person_id, settled_on);

-- A record uploaded before the agency declared its outage waits, with its data, and is
-- reimbursed when the declaration arrives.
ALTER TABLE proactive_records ADD COLUMN record jsonb;
