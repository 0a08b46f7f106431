-- Notify: each person's contact data (from enrollment events) and every message's delivery.
CREATE TABLE contacts (
    person_id  text PRIMARY KEY,
    name       text NOT NULL,
    mobile     text NOT NULL,
    email      text,
    sms_opt_in   boolean NOT NULL DEFAULT true,
    email_opt_in boolean NOT NULL DEFAULT true,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Claimed before sending: the unique key is what makes a message go out at most once.
CREATE TABLE deliveries (
    id              bigserial PRIMARY KEY,
    source_event_id text NOT NULL,
    person_id       text NOT NULL,
    channel         text NOT NULL,
    recipient       text NOT NULL,
    template        text NOT NULL,
    subject         text,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',  -- pending, sending, sent, parked, unknown
    attempts        int  NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    UNIQUE (source_event_id, channel, recipient)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_person ON deliveries (person_id, id);
