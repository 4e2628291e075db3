-- Reporting read models: what the public topics say, in tables shaped for analysis.
-- Written only by the reporting consumer (services/reporting/adapters/projections.py), one
-- consumed batch per transaction, and rebuilt from the topics by python -m services.reporting.rebuild.
-- Every table and view is described for analysts in docs/reporting.md.

-- Dimensions ------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS customers (
    customer_id     text PRIMARY KEY,
    region          text,
    registered_at   timestamptz,
    first_order_at  timestamptz,
    blocked         boolean NOT NULL DEFAULT false,
    erased          boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS products (
    sku           text PRIMARY KEY,
    name          text    NOT NULL,
    category      text    NOT NULL,
    unit          text    NOT NULL,
    weight_kg     numeric(12,3),
    manufactured  boolean NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS warehouses (
    code    text PRIMARY KEY,
    name    text NOT NULL,
    region  text NOT NULL
);

-- Orders ----------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS orders (
    order_id         text PRIMARY KEY,
    channel          text          NOT NULL,
    customer_id      text          NOT NULL,
    region           text          NOT NULL,  -- the shipping country, else the customer's region
    country          text,
    currency         text          NOT NULL,
    payment_terms    text          NOT NULL,
    shipping_method  text          NOT NULL,
    subtotal         numeric(14,2) NOT NULL,
    placed_at        timestamptz   NOT NULL,
    status           text          NOT NULL,
    status_at        timestamptz   NOT NULL,
    status_reason    text
);
CREATE INDEX IF NOT EXISTS orders_by_placed_at ON orders (placed_at);

CREATE TABLE IF NOT EXISTS order_lines (
    order_id      text          NOT NULL,
    line_no       integer       NOT NULL,
    sku           text          NOT NULL,
    quantity      bigint        NOT NULL,
    unit_price    numeric(14,2) NOT NULL,
    tax_category  text          NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- One row per status an order entered, with when and why.
CREATE TABLE IF NOT EXISTS order_status_changes (
    event_id         uuid PRIMARY KEY,
    order_id         text        NOT NULL,
    status           text        NOT NULL,
    previous_status  text,
    reason           text,
    changed_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS order_status_changes_by_order ON order_status_changes (order_id, changed_at);

-- Where each order's units were reserved (the latest reservation inventory made for it).
CREATE TABLE IF NOT EXISTS order_allocations (
    order_id   text   NOT NULL,
    sku        text   NOT NULL,
    warehouse  text   NOT NULL,
    quantity   bigint NOT NULL,
    PRIMARY KEY (order_id, sku, warehouse)
);

-- Orders inventory could not serve at once (StockShortage): waiting (backordered) or refused.
CREATE TABLE IF NOT EXISTS order_shortages (
    event_id     uuid        NOT NULL,
    part         integer     NOT NULL,
    order_id     text        NOT NULL,
    sku          text        NOT NULL,
    quantity     bigint      NOT NULL,
    backordered  boolean     NOT NULL,
    noted_at     timestamptz NOT NULL,
    PRIMARY KEY (event_id, part)
);

-- Billing -----------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS invoices (
    invoice_id     text PRIMARY KEY,
    order_id       text          NOT NULL,
    customer_id    text          NOT NULL,
    currency       text          NOT NULL,
    subtotal       numeric(14,2) NOT NULL,
    tax            numeric(14,2) NOT NULL,
    shipping_fee   numeric(14,2) NOT NULL,
    total          numeric(14,2) NOT NULL,
    amount_paid    numeric(14,2) NOT NULL DEFAULT 0,
    status         text          NOT NULL,  -- open | paid | void
    payment_terms  text          NOT NULL,
    issued_at      timestamptz   NOT NULL,
    due_at         timestamptz   NOT NULL,
    paid_at        timestamptz,
    voided_at      timestamptz,
    void_reason    text
);
CREATE INDEX IF NOT EXISTS invoices_by_order ON invoices (order_id);

-- Invoice lines carry the tax worked out per line: the order report's tax and gross amounts.
CREATE TABLE IF NOT EXISTS invoice_lines (
    invoice_id  text          NOT NULL,
    order_id    text          NOT NULL,
    line_no     integer       NOT NULL,
    sku         text          NOT NULL,
    quantity    bigint        NOT NULL,
    net         numeric(14,2) NOT NULL,
    tax         numeric(14,2) NOT NULL,
    gross       numeric(14,2) NOT NULL,
    PRIMARY KEY (invoice_id, line_no)
);
CREATE INDEX IF NOT EXISTS invoice_lines_by_order ON invoice_lines (order_id, line_no);

CREATE TABLE IF NOT EXISTS payments (
    event_id     uuid PRIMARY KEY,
    reference    text          NOT NULL,
    order_id     text          NOT NULL,
    invoice_id   text          NOT NULL,
    method       text          NOT NULL,
    amount       numeric(14,2) NOT NULL,
    outcome      text          NOT NULL,  -- succeeded | failed
    recorded_at  timestamptz   NOT NULL
);

CREATE TABLE IF NOT EXISTS refunds (
    refund_id   text PRIMARY KEY,
    order_id    text          NOT NULL,
    invoice_id  text          NOT NULL,
    amount      numeric(14,2) NOT NULL,
    reason      text          NOT NULL,
    issued_at   timestamptz   NOT NULL
);

-- Stock -------------------------------------------------------------------------------------

-- Every change to a SKU's stock in a warehouse, as deltas: the levels at any moment are the
-- sums of the movements up to it. Backorders belong to no warehouse (warehouse '').
CREATE TABLE IF NOT EXISTS stock_movements (
    event_id     uuid        NOT NULL,
    part         integer     NOT NULL,  -- a movement of several warehouses: one row each
    sku          text        NOT NULL,
    warehouse    text        NOT NULL,
    kind         text        NOT NULL,
    moved_at     timestamptz NOT NULL,
    on_hand      bigint      NOT NULL DEFAULT 0,
    reserved     bigint      NOT NULL DEFAULT 0,
    in_transit   bigint      NOT NULL DEFAULT 0,
    backordered  bigint      NOT NULL DEFAULT 0,
    order_id     text,
    PRIMARY KEY (event_id, part)
);
CREATE INDEX IF NOT EXISTS stock_movements_by_item ON stock_movements (sku, warehouse, moved_at);

CREATE TABLE IF NOT EXISTS shipments (
    shipment_id      text PRIMARY KEY,
    order_id         text        NOT NULL,
    warehouse        text        NOT NULL,
    method           text        NOT NULL,
    units            bigint      NOT NULL,
    status           text        NOT NULL,
    created_at       timestamptz NOT NULL,
    dispatched_at    timestamptz,
    delivered_at     timestamptz,
    cancelled_at     timestamptz,
    carrier          text,
    tracking_number  text
);
CREATE INDEX IF NOT EXISTS shipments_by_order ON shipments (order_id);

-- Production (filled once the production service publishes its events) ----------------------

CREATE TABLE IF NOT EXISTS production_orders (
    production_order_id  text PRIMARY KEY,
    sku                  text        NOT NULL,
    planned_quantity     bigint      NOT NULL,
    completed_quantity   bigint      NOT NULL DEFAULT 0,
    status               text        NOT NULL,
    created_at           timestamptz NOT NULL,
    due_at               timestamptz,
    completed_at         timestamptz,
    quality_passed       integer     NOT NULL DEFAULT 0,
    quality_failed       integer     NOT NULL DEFAULT 0
);

-- Freshness ---------------------------------------------------------------------------------

-- Per source topic: the newest event applied, and when it was applied.
CREATE TABLE IF NOT EXISTS source_positions (
    topic             text PRIMARY KEY,
    events            bigint      NOT NULL DEFAULT 0,
    last_occurred_at  timestamptz NOT NULL,
    last_applied_at   timestamptz NOT NULL
);
