-- Transfer workflow: both directions, statutory clocks, amounts moved, letters, answers.
ALTER TABLE transfers DROP CONSTRAINT transfers_pkey;
ALTER TABLE transfers
    ADD COLUMN id bigserial PRIMARY KEY,
    ADD COLUMN direction text NOT NULL DEFAULT 'out',
    ADD COLUMN trigger text NOT NULL DEFAULT 'application',
    ADD COLUMN mode text NOT NULL DEFAULT 'electronic',
    ADD COLUMN insurance_type text,
    ADD COLUMN name text,
    ADD COLUMN contribution_months integer,
    ADD COLUMN account_balance_fen bigint,
    ADD COLUMN credited_months integer,
    ADD COLUMN credited_balance_fen bigint,
    ADD COLUMN started_on date,
    ADD COLUMN due_on date,
    ADD COLUMN leg_due_on date,
    ADD COLUMN in_leg_days integer,
    ADD COLUMN dispatched_on date,
    ADD COLUMN completed_on date,
    ADD COLUMN paused_since date,
    ADD COLUMN paused_working_days integer NOT NULL DEFAULT 0,
    ADD COLUMN resume_stage text,
    ADD COLUMN tracking_number text,
    ADD COLUMN overdue_flagged boolean NOT NULL DEFAULT false,
    ADD COLUMN leg_overdue_flagged boolean NOT NULL DEFAULT false;
ALTER TABLE transfers ALTER COLUMN direction DROP DEFAULT;
UPDATE transfers SET stage = 'refused' WHERE stage = 'rejected';
UPDATE transfers SET stage = 'awaiting_info_sheet' WHERE stage = 'requested';
-- A transfer is named by its origin: partners' ids only need to be unique at their end.
CREATE UNIQUE INDEX transfers_identity ON transfers (direction, from_region, transfer_id);
CREATE INDEX transfers_open ON transfers (due_on)
    WHERE stage NOT IN ('completed', 'failed', 'refused', 'cancelled');
CREATE INDEX transfers_tracking ON transfers (tracking_number) WHERE tracking_number IS NOT NULL;

ALTER TABLE transfer_history ADD COLUMN transfer_row bigint REFERENCES transfers (id);
UPDATE transfer_history h SET transfer_row = t.id FROM transfers t
    WHERE t.transfer_id = h.transfer_id;
CREATE INDEX transfer_history_row ON transfer_history (transfer_row);

-- Answers that changed nothing (duplicate, late, out of order, unknown): kept to be seen.
CREATE TABLE ignored_answers (
    id          bigserial PRIMARY KEY,
    event_id    text NOT NULL,
    transfer_id text NOT NULL,
    sender      text NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ignored_answers_transfer ON ignored_answers (transfer_id);
