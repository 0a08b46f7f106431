-- A staff decision that arrived before the application or case it decides (they come from
-- different systems on different topics, so their order is not guaranteed): kept whole, with
-- who signed it, and decided by the same handler as soon as the application arrives.
CREATE TABLE awaiting_application (
    event_id       text PRIMARY KEY,
    event_type     text NOT NULL,
    application_id text NOT NULL,
    person_id      text,
    envelope       bytea NOT NULL,
    received_at    timestamptz NOT NULL,
    signed_by      text,
    actor          text,
    waiting_since  timestamptz NOT NULL DEFAULT now(),
    resumed_at     timestamptz
);
CREATE INDEX awaiting_application_open ON awaiting_application (application_id)
    WHERE resumed_at IS NULL;
