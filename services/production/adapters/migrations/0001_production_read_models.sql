-- Production read models, kept by the projector in the same transaction as the events.

CREATE TABLE IF NOT EXISTS work_centers (
    code                      text PRIMARY KEY,
    name                      text        NOT NULL,
    capacity_minutes_per_day  integer     NOT NULL,
    calendar                  jsonb       NOT NULL,
    registered_at             timestamptz NOT NULL
);

-- The current BOM of each manufactured SKU (the event store keeps every version).
CREATE TABLE IF NOT EXISTS boms (
    sku              text PRIMARY KEY,
    components       jsonb         NOT NULL,
    output_quantity  integer       NOT NULL,
    scrap_rate       numeric(5,4)  NOT NULL,
    operations       jsonb         NOT NULL,
    version          integer       NOT NULL,
    defined_at       timestamptz   NOT NULL
);

CREATE TABLE IF NOT EXISTS production_orders (
    production_order_id         text PRIMARY KEY,
    sku                         text        NOT NULL,
    quantity                    integer     NOT NULL,
    warehouse                   text        NOT NULL,
    due                         timestamptz NOT NULL,
    origin                      text        NOT NULL,  -- make_to_order | make_to_stock | manual
    sales_order_id              text,
    parent_production_order_id  text,
    replaces                    text,
    status                      text        NOT NULL,
    passed                      integer     NOT NULL DEFAULT 0,
    scrapped                    integer     NOT NULL DEFAULT 0,
    late                        boolean     NOT NULL DEFAULT false,
    expected_finish             timestamptz,
    components                  jsonb       NOT NULL,
    missing                     jsonb       NOT NULL DEFAULT '[]',
    consumed                    boolean     NOT NULL DEFAULT false,
    received                    boolean     NOT NULL DEFAULT false,
    created_at                  timestamptz NOT NULL,
    updated_at                  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS production_orders_by_status ON production_orders (status, due);
CREATE INDEX IF NOT EXISTS production_orders_by_sku ON production_orders (sku, status);
CREATE INDEX IF NOT EXISTS production_orders_by_sales_order ON production_orders (sales_order_id);
CREATE INDEX IF NOT EXISTS production_orders_by_parent ON production_orders (parent_production_order_id);

CREATE TABLE IF NOT EXISTS production_tasks (
    task_id              text PRIMARY KEY,
    production_order_id  text        NOT NULL,
    seq                  integer     NOT NULL,
    operation            text        NOT NULL,
    work_center          text        NOT NULL,
    inspected            boolean     NOT NULL,
    assignee             text,
    status               text        NOT NULL,  -- pending | in_progress | done
    quantity_done        integer     NOT NULL DEFAULT 0,
    planned_start        timestamptz,
    planned_finish       timestamptz,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS production_tasks_by_order ON production_tasks (production_order_id, seq);
CREATE INDEX IF NOT EXISTS production_tasks_by_assignee ON production_tasks (assignee, status);
CREATE INDEX IF NOT EXISTS production_tasks_by_work_center ON production_tasks (work_center, planned_start);

-- Inventory's warehouses (WarehouseRegistered), where finished goods may be put.
CREATE TABLE IF NOT EXISTS known_warehouses (
    code    text PRIMARY KEY,
    region  text NOT NULL
);
