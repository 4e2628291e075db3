-- Publish after commit (libs/runtime/publisher.py): a row names the live process that will
-- publish it (the id of its session advisory lock), or NULL when it is the relay's. The key
-- index serves the check, made as a row is written, for an earlier row of its key still
-- waiting under someone else.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS publisher integer;
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (key, id);
