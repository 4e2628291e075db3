-- The product catalogue and the shipments read models, kept by the projector in the same
-- transaction as the events.

CREATE TABLE IF NOT EXISTS products (
    sku           text          PRIMARY KEY,
    name          text          NOT NULL,
    category      text          NOT NULL,
    unit          text          NOT NULL,
    weight_kg     numeric(9, 3) NOT NULL,
    manufactured  boolean       NOT NULL,
    list_prices   jsonb         NOT NULL DEFAULT '{}',
    updated_at    timestamptz   NOT NULL
);

-- GET /products?category= pages through a category in SKU order.
CREATE INDEX IF NOT EXISTS products_by_category ON products (category, sku);

CREATE TABLE IF NOT EXISTS shipments (
    shipment_id      text          PRIMARY KEY,
    order_id         text          NOT NULL,
    warehouse        text          NOT NULL,
    method           text          NOT NULL,
    lines            jsonb         NOT NULL,
    status           text          NOT NULL,
    carrier          text,
    tracking_number  text,
    weight_kg        numeric(9, 3),
    parcels          integer       NOT NULL DEFAULT 1,
    -- [{status, at, actor}] in the order things happened; carrier reports add a location
    history          jsonb         NOT NULL DEFAULT '[]',
    created_at       timestamptz   NOT NULL,
    updated_at       timestamptz   NOT NULL
);

CREATE INDEX IF NOT EXISTS shipments_by_order ON shipments (order_id);
CREATE INDEX IF NOT EXISTS shipments_by_tracking_number ON shipments (tracking_number)
    WHERE tracking_number IS NOT NULL;
-- The pick list: what a warehouse still has to pick.
CREATE INDEX IF NOT EXISTS shipments_to_pick ON shipments (warehouse, created_at)
    WHERE status IN ('pending', 'picking');
