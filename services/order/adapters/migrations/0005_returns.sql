-- Returns after delivery (docs/returns.md): one row per return, projected from the return's
-- events in the same transaction (services/order/adapters/returns_projections.py).
CREATE TABLE IF NOT EXISTS returns (
    return_id      text        PRIMARY KEY,
    order_id       text        NOT NULL,
    status         text        NOT NULL,
    resolution     text        NOT NULL,
    lines          jsonb       NOT NULL,
    received       jsonb       NOT NULL DEFAULT '[]',
    reason         text,
    credit_note_id text,
    refund_id      text,
    credit_amount  numeric(14, 2),
    refund_amount  numeric(14, 2),
    -- resolution replace: reserved, backordered, or the replacement shipment's milestone
    replacement_status text,
    requested_by   text        NOT NULL,
    requested_at   timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS returns_by_order ON returns (order_id, requested_at);
CREATE INDEX IF NOT EXISTS returns_by_status ON returns (status, requested_at);
