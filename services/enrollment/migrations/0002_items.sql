-- Enrollment items beyond resident enrollment: employers, reviewed cases, filings,
-- chronic-disease recognitions, family aid, and scheduled status changes.
ALTER TABLE persons ADD COLUMN employer_code text;
ALTER TABLE persons ADD COLUMN retired boolean NOT NULL DEFAULT false;

CREATE TABLE employers (
    employer_code text PRIMARY KEY,
    name          text NOT NULL,
    contact_email text NOT NULL,
    civil_servant_benefit boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Applications that wait for staff review: death cancellation, chronic disease, civil servant.
CREATE TABLE cases (
    case_id    text PRIMARY KEY,
    kind       text NOT NULL,
    subject    text NOT NULL,  -- person id or employer code
    state      text NOT NULL,
    data       jsonb NOT NULL,
    reasons    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cases_subject ON cases (subject);

CREATE TABLE filings (
    filing_id      text PRIMARY KEY,
    person_id      text NOT NULL,
    category       text NOT NULL,  -- remote or accident
    kind           text NOT NULL,
    source         text NOT NULL,
    treatment_area text,
    start_date     date NOT NULL,
    end_date       date,
    detail         jsonb NOT NULL DEFAULT '{}',
    state          text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX filings_person ON filings (person_id) WHERE state = 'active';

CREATE TABLE chronic_recognitions (
    person_id        text NOT NULL,
    disease          text NOT NULL,
    institution_code text NOT NULL,
    effective_from   date NOT NULL,
    without_application boolean NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, disease)
);

CREATE TABLE family_aid (
    authorisation_id text PRIMARY KEY,
    person_id        text NOT NULL,
    relative_id      text NOT NULL,
    relationship     text NOT NULL,
    state            text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX family_aid_person ON family_aid (person_id) WHERE state = 'active';

-- Status changes that fall due later (a stop takes effect after the paid period).
CREATE TABLE scheduled_changes (
    id             bigserial PRIMARY KEY,
    person_id      text NOT NULL,
    to_status      text NOT NULL,
    effective_on   date NOT NULL,
    cause_id       text NOT NULL,
    correlation_id text NOT NULL,
    applied_at     timestamptz
);
CREATE INDEX scheduled_due ON scheduled_changes (effective_on) WHERE applied_at IS NULL;
