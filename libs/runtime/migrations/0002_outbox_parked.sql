-- Outbox rows the broker refused for good (too large, say), set aside with the reason so
-- they cannot block the rows behind them. An operator inspects them; nothing deletes them.
CREATE TABLE IF NOT EXISTS outbox_parked (
    id          bigint      PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    reason      text        NOT NULL
);
