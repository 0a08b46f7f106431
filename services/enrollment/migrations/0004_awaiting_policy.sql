-- Requests whose fact is dated where no policy version is in force: kept whole, visible, and
-- decided by the same handler (with their original date of receipt) once the policy exists.
CREATE TABLE awaiting_policy (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    person_id   text,
    reference   text NOT NULL,
    envelope    bytea NOT NULL,
    received_at timestamptz NOT NULL,
    fact_date   date NOT NULL,
    reason      text NOT NULL,
    waiting_since timestamptz NOT NULL DEFAULT now(),
    resumed_at  timestamptz
);
CREATE INDEX awaiting_policy_open ON awaiting_policy (fact_date) WHERE resumed_at IS NULL;
