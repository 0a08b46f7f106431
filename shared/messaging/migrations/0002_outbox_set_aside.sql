-- A row the relay cannot publish for a permanent reason (no such topic, too large, not
-- authorised) is set aside here, visible and replayable, so it never holds up the rest.
ALTER TABLE outbox ADD COLUMN attempts int NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error text;

CREATE TABLE outbox_set_aside (
    id           bigint      PRIMARY KEY,
    topic        text        NOT NULL,
    key          bytea,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL,
    attempts     int         NOT NULL,
    reason       text        NOT NULL,
    set_aside_at timestamptz NOT NULL DEFAULT now()
);
