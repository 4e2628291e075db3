-- The two audit indexes of 0003 cost every appended event two more B-tree entries: about a
-- tenth of the platform's throughput under `make bench` (92.3 orders/s without them, 82.2
-- with). Most events are a service's own reactions (consumers, deadlines) and carry no audit
-- metadata, and audit queries are about callers: index only the events callers caused
-- (partial index), and find time ranges with a BRIN index, a few bytes per block range of an
-- append-only table whose rows arrive in time order.
DROP INDEX IF EXISTS events_by_actor;
DROP INDEX IF EXISTS events_by_time;
CREATE INDEX IF NOT EXISTS events_by_caller ON events (actor, occurred_at, global_position)
    WHERE metadata IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_time_brin ON events USING brin (occurred_at);
