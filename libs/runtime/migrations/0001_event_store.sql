-- Event store, outbox and inbox: the same in every service's database.

CREATE TABLE IF NOT EXISTS events (
    -- A catch-up reader follows (transaction_id, global_position) and only reads rows whose
    -- transaction is older than every transaction still running, so a row that commits late
    -- with a smaller global_position is never skipped.
    global_position  bigserial   NOT NULL UNIQUE,
    transaction_id   xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id        text        NOT NULL,
    stream_type      text        NOT NULL,
    version          integer     NOT NULL CHECK (version >= 1),
    event_id         uuid        NOT NULL UNIQUE,
    event_type       text        NOT NULL,
    event_version    integer     NOT NULL,
    occurred_at      timestamptz NOT NULL,
    correlation_id   text        NOT NULL,
    causation_id     text,
    actor            text        NOT NULL,
    payload          jsonb       NOT NULL,
    -- The primary key is the optimistic concurrency check: two writers of the same
    -- (stream, version) cannot both commit.
    PRIMARY KEY (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_commit_order ON events (transaction_id, global_position);

CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    handled_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
