-- Transient failures are retried until a horizon counted from here (reset by an operator's retry).
ALTER TABLE deliveries ADD COLUMN retry_since timestamptz NOT NULL DEFAULT now();
