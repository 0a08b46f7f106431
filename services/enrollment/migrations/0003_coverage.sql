-- Coverage periods (who was insured when, and why), transfer-in credits, and a deferred
-- change of chronic-disease designated institution that keeps the present one until then.
CREATE TABLE coverage_periods (
    person_id      text NOT NULL,
    seq            int NOT NULL,
    insurance_type text NOT NULL,
    start_date     date NOT NULL,
    end_date       date,
    source         text NOT NULL,
    reference      text NOT NULL,
    PRIMARY KEY (person_id, seq)
);

-- Periods for people insured before periods were kept: applied payments, and employees on
-- staff from their last change.
INSERT INTO coverage_periods (person_id, seq, insurance_type, start_date, end_date, source,
                              reference)
SELECT pay.person_id,
       row_number() OVER (PARTITION BY pay.person_id ORDER BY pay.period_start),
       p.insurance_type, pay.period_start,
       CASE WHEN p.insurance_type = 'resident'
            THEN make_date(extract(year FROM pay.period_end)::int, 12, 31)
            ELSE pay.period_end END,
       'tax_payment', pay.payment_ref
FROM payments pay JOIN persons p USING (person_id)
WHERE pay.state = 'applied';

INSERT INTO coverage_periods (person_id, seq, insurance_type, start_date, end_date, source,
                              reference)
SELECT person_id, 1000, 'employee', updated_at::date, NULL, 'employer', employer_code
FROM persons WHERE status = 'active' AND employer_code IS NOT NULL;

CREATE TABLE transfer_credits (
    transfer_id          text PRIMARY KEY,
    person_id            text NOT NULL,
    from_region          text NOT NULL,
    insurance_type       text,
    credited_months      int NOT NULL,
    credited_balance_fen bigint NOT NULL,
    accepted_on          date NOT NULL,
    mode                 text NOT NULL,
    recorded_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transfer_credits_person ON transfer_credits (person_id);

ALTER TABLE chronic_recognitions ADD COLUMN next_institution_code text;
ALTER TABLE chronic_recognitions ADD COLUMN next_from date;
