-- Claims judged as of the expense date: coverage periods from enrollment, the insurance type
-- and the platform's date of receipt kept with each claim, claims awaiting a policy, and
-- filings kept after they end (a filing in force on the expense date still counts).
CREATE TABLE coverage_view (
    person_id      text NOT NULL,
    insurance_type text NOT NULL,
    start_date     date NOT NULL,
    end_date       date,
    source         text NOT NULL,
    reference      text NOT NULL
);
CREATE INDEX coverage_view_person ON coverage_view (person_id);

ALTER TABLE claims ADD COLUMN insurance_type text;
ALTER TABLE claims ADD COLUMN filed_on date;
ALTER TABLE claims ADD COLUMN waiting_for text;
CREATE INDEX claims_awaiting_policy ON claims (expense_date) WHERE stage = 'awaiting_policy';

ALTER TABLE filings_view ADD COLUMN ended_on date;
