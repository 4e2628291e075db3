-- Warehouse operations (issue 9): stock in transit between warehouses, transfers, stock counts,
-- reorder points and their open low-stock alerts. Kept by the projector in the same
-- transaction as the events (adapters/warehouse_ops_projections.py).

-- Stock on its way: out of `on_hand` at the source, not yet on hand at the destination.
ALTER TABLE stock_levels
    ADD COLUMN IF NOT EXISTS in_transit_in  bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS in_transit_out bigint NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS transfers (
    transfer_id     text        PRIMARY KEY,
    reference       text        NOT NULL UNIQUE,
    from_warehouse  text        NOT NULL,
    to_warehouse    text        NOT NULL,
    status          text        NOT NULL,
    requested_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS transfer_lines (
    transfer_id  text   NOT NULL,
    sku          text   NOT NULL,
    quantity     bigint NOT NULL,
    received     bigint NOT NULL DEFAULT 0,
    written_off  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (transfer_id, sku)
);

CREATE TABLE IF NOT EXISTS transfer_write_offs (
    transfer_id     text        NOT NULL,
    sku             text        NOT NULL,
    quantity        bigint      NOT NULL,
    reason          text        NOT NULL,
    written_off_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS transfer_write_offs_by_transfer ON transfer_write_offs (transfer_id);

CREATE TABLE IF NOT EXISTS stock_counts (
    count_id         text        PRIMARY KEY,
    warehouse        text        NOT NULL,
    whole_warehouse  boolean     NOT NULL,
    status           text        NOT NULL,
    started_at       timestamptz NOT NULL,
    posted_at        timestamptz,
    posted_by        text
);

-- `book`: on hand by the books when the SKU was last counted (expected + movements since).
CREATE TABLE IF NOT EXISTS stock_count_lines (
    count_id  text   NOT NULL,
    sku       text   NOT NULL,
    expected  bigint NOT NULL,
    counted   bigint,
    book      bigint,
    PRIMARY KEY (count_id, sku)
);

CREATE TABLE IF NOT EXISTS reorder_points (
    sku        text   NOT NULL,
    warehouse  text   NOT NULL,
    min        bigint NOT NULL,
    max        bigint NOT NULL,
    PRIMARY KEY (sku, warehouse)
);

CREATE TABLE IF NOT EXISTS low_stock_alerts (
    sku                 text        NOT NULL,
    warehouse           text        NOT NULL,
    available           bigint      NOT NULL,
    min                 bigint      NOT NULL,
    max                 bigint      NOT NULL,
    suggested_quantity  bigint      NOT NULL,
    detected_at         timestamptz NOT NULL,
    PRIMARY KEY (sku, warehouse)
);
