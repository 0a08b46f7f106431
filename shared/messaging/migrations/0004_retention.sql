-- Retention (shared/messaging/retention.py) finds rows by age: without these indexes every
-- pruning pass would read the whole table.
CREATE INDEX IF NOT EXISTS processed_messages_processed_at ON processed_messages (processed_at);
CREATE INDEX IF NOT EXISTS outbox_set_aside_set_aside_at ON outbox_set_aside (set_aside_at);
