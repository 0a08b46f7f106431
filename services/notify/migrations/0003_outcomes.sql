-- Transient failures are retried until a horizon counted from here (reset by an operator's retry).
ALTER TABLE deliveries ADD COLUMN retry_since timestamptz NOT NULL DEFAULT now();
-- Which worker claimed a row: at its restart, rows it claimed and never handed over go back.
ALTER TABLE deliveries ADD COLUMN claimed_by text;
