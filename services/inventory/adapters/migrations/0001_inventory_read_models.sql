-- Inventory read models, kept by the projector in the same transaction as the events.

CREATE TABLE IF NOT EXISTS warehouses (
    code    text PRIMARY KEY,
    name    text NOT NULL,
    region  text NOT NULL
);

CREATE TABLE IF NOT EXISTS stock_levels (
    sku        text    NOT NULL,
    warehouse  text    NOT NULL,
    on_hand    integer NOT NULL DEFAULT 0,
    reserved   integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    PRIMARY KEY (sku, warehouse)
);

CREATE TABLE IF NOT EXISTS reservations (
    order_id     text PRIMARY KEY,
    status       text NOT NULL,
    allocations  jsonb NOT NULL DEFAULT '[]',
    missing      jsonb NOT NULL DEFAULT '[]',
    updated_at   timestamptz NOT NULL
);

-- Orders waiting for stock, per SKU, in arrival order.
CREATE TABLE IF NOT EXISTS backorders (
    sku        text        NOT NULL,
    order_id   text        NOT NULL,
    quantity   integer     NOT NULL,
    queued_at  timestamptz NOT NULL,
    PRIMARY KEY (sku, order_id)
);
