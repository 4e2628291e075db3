-- Audit metadata of the command that recorded an event (subject, role, API key id, request id,
-- source address); NULL for work a service does by itself. Adding a nullable column without
-- a default only changes the catalogue: existing rows are not rewritten.
ALTER TABLE events ADD COLUMN IF NOT EXISTS metadata jsonb;

-- GET /audit answers newest first by (occurred_at, global_position), filtered by actor or by
-- time; a query by aggregate goes through the primary key (stream_id, version). Two indexes,
-- each one more entry per appended event.
CREATE INDEX IF NOT EXISTS events_by_actor ON events (actor, occurred_at, global_position);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_at, global_position);
