-- Maternity allowance without application: employers' wage bases, and births awaiting one.
-- Who employs whom, from enrollment's roster rows (they may arrive before the status change).
CREATE TABLE employments (
    person_id     text PRIMARY KEY,
    employer_code text NOT NULL
);

CREATE TABLE wage_bases (
    employer_code text NOT NULL,
    year          int NOT NULL,
    average_monthly_wage_fen bigint NOT NULL,
    PRIMARY KEY (employer_code, year)
);

CREATE TABLE births (
    birth_id        text PRIMARY KEY,
    person_id       text NOT NULL,
    birth_date      date NOT NULL,
    difficult_birth boolean NOT NULL,
    babies          int NOT NULL,
    state           text NOT NULL,  -- waiting_for_wage_base, granted, not_eligible
    reason          text,
    claim_id        text
);
