-- What each receipt id booked, so the same id sent again with other stock is refused (409)
-- rather than silently ignored. Kept by the projector from StockReceived; filled here from
-- the receipts booked before this table existed.

CREATE TABLE IF NOT EXISTS stock_receipts (
    receipt_id   text        PRIMARY KEY,
    sku          text        NOT NULL,
    warehouse    text        NOT NULL,
    quantity     bigint      NOT NULL,
    received_at  timestamptz NOT NULL
);

INSERT INTO stock_receipts (receipt_id, sku, warehouse, quantity, received_at)
SELECT payload->>'receipt_id', payload->>'sku', payload->>'warehouse',
       (payload->>'quantity')::bigint, occurred_at
FROM events
WHERE event_type = 'StockReceived'
ON CONFLICT (receipt_id) DO NOTHING;
