-- Delivery tracking for real gateways: claim time, gateway ids, SMS parts and receipts.
ALTER TABLE deliveries ADD COLUMN claimed_at timestamptz;
ALTER TABLE deliveries ADD COLUMN delivery_state text;
ALTER TABLE deliveries ADD COLUMN provider_ids text[] NOT NULL DEFAULT '{}';
CREATE INDEX deliveries_status ON deliveries (status) WHERE status IN ('parked', 'unknown', 'sending');

CREATE TABLE sms_parts (
    message_id  text PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES deliveries (id),
    seq         int NOT NULL
);
CREATE INDEX sms_parts_delivery ON sms_parts (delivery_id);

-- Receipts may arrive before the submit response is recorded; both orders converge.
CREATE TABLE sms_receipts (
    message_id  text PRIMARY KEY,
    state       text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE preferences (
    person_id  text PRIMARY KEY,
    sms        boolean NOT NULL,
    email      boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
