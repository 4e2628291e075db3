-- The views behind the reports (docs/reporting.md): what the HTTP reports read, and what an
-- analyst's BI tool reads through the read-only role. Each report adds its period, filters and
-- grouping to one of these.

-- One row per order line and warehouse it was reserved in (a line split across warehouses
-- gives one row per warehouse; not yet reserved: one row, warehouse NULL). Amounts are the
-- invoice's per-line net, tax and gross once invoiced, else quantity x unit price as net and
-- no tax. A split line's units and amounts are shared in proportion to the units reserved in
-- each warehouse, rounded to the cent, the last warehouse taking the remainder: the parts add
-- up to the line exactly.
CREATE OR REPLACE VIEW report_order_lines AS
WITH priced AS (
    SELECT l.order_id, l.line_no, l.sku, l.quantity,
           COALESCE(il.net, l.quantity * l.unit_price)   AS net,
           COALESCE(il.tax, 0)                           AS tax,
           COALESCE(il.gross, l.quantity * l.unit_price) AS gross
    FROM order_lines l
    LEFT JOIN invoice_lines il ON il.order_id = l.order_id AND il.line_no = l.line_no
), split AS (
    SELECT p.*, a.warehouse,
           COALESCE(a.quantity::numeric / sum(a.quantity) OVER line, 1) AS share,
           row_number() OVER (PARTITION BY p.order_id, p.line_no ORDER BY a.warehouse) AS part,
           count(*) OVER line AS parts
    FROM priced p
    LEFT JOIN order_allocations a ON a.order_id = p.order_id AND a.sku = p.sku
    WINDOW line AS (PARTITION BY p.order_id, p.line_no)
), rounded AS (
    SELECT s.*,
           floor(s.quantity * s.share)::bigint AS units_part,
           round(s.net * s.share, 2)           AS net_part,
           round(s.tax * s.share, 2)           AS tax_part,
           round(s.gross * s.share, 2)         AS gross_part
    FROM split s
)
SELECT r.order_id, r.line_no, r.sku, pr.category, r.warehouse,
       o.channel, o.customer_id, o.region, o.country, o.status, o.currency, o.placed_at,
       CASE WHEN r.part = r.parts THEN r.quantity - sum(r.units_part) OVER line + r.units_part
            ELSE r.units_part END AS units,
       CASE WHEN r.part = r.parts THEN r.net - sum(r.net_part) OVER line + r.net_part
            ELSE r.net_part END AS net_amount,
       CASE WHEN r.part = r.parts THEN r.tax - sum(r.tax_part) OVER line + r.tax_part
            ELSE r.tax_part END AS tax_amount,
       CASE WHEN r.part = r.parts THEN r.gross - sum(r.gross_part) OVER line + r.gross_part
            ELSE r.gross_part END AS gross_amount
FROM rounded r
JOIN orders o ON o.order_id = r.order_id
LEFT JOIN products pr ON pr.sku = r.sku
WINDOW line AS (PARTITION BY r.order_id, r.line_no);

-- One row per order with its line totals.
CREATE OR REPLACE VIEW report_orders AS
SELECT o.order_id, o.channel, o.customer_id, o.region, o.country, o.currency, o.payment_terms,
       o.shipping_method, o.placed_at, o.status, o.status_at, o.status_reason,
       sum(l.units) AS units, sum(l.net_amount) AS net_amount, sum(l.tax_amount) AS tax_amount,
       sum(l.gross_amount) AS gross_amount
FROM orders o
JOIN report_order_lines l ON l.order_id = o.order_id
GROUP BY o.order_id;

-- When each order first reached each milestone of the fulfilment funnel. An order that
-- skipped a milestone's own status (completed without a recorded delivery) still counts as
-- having passed it: *_reached says so, *_at is when its own status was entered (NULL if never).
CREATE OR REPLACE VIEW report_order_milestones AS
SELECT o.order_id, o.channel, o.customer_id, o.region, o.currency, o.placed_at,
       o.status, o.status_reason,
       min(c.changed_at) FILTER (WHERE c.status = 'confirmed') AS confirmed_at,
       min(c.changed_at) FILTER (WHERE c.status = 'shipped')   AS shipped_at,
       min(c.changed_at) FILTER (WHERE c.status = 'delivered') AS delivered_at,
       min(c.changed_at) FILTER (WHERE c.status = 'completed') AS completed_at,
       min(c.changed_at) FILTER (WHERE c.status = 'cancelled') AS cancelled_at,
       min(c.changed_at) FILTER (WHERE c.status = 'rejected')  AS rejected_at,
       bool_or(c.status IN ('confirmed', 'partially_shipped', 'shipped', 'delivered', 'completed'))
           IS TRUE AS confirmed_reached,
       bool_or(c.status IN ('shipped', 'delivered', 'completed')) IS TRUE AS shipped_reached,
       bool_or(c.status IN ('delivered', 'completed')) IS TRUE             AS delivered_reached,
       bool_or(c.status = 'completed') IS TRUE                             AS completed_reached
FROM orders o
LEFT JOIN order_status_changes c ON c.order_id = o.order_id
GROUP BY o.order_id;

-- Invoices with what is still owed on them (open ones only; paid and void ones owe nothing).
CREATE OR REPLACE VIEW report_invoices AS
SELECT i.invoice_id, i.order_id, i.customer_id, i.currency, i.subtotal, i.tax, i.shipping_fee,
       i.total, i.amount_paid, i.status, i.payment_terms, i.issued_at, i.due_at, i.paid_at,
       i.voided_at, i.void_reason,
       COALESCE((SELECT sum(r.amount) FROM refunds r WHERE r.invoice_id = i.invoice_id), 0) AS refunded,
       CASE WHEN i.status = 'open' THEN i.total - i.amount_paid ELSE 0 END AS outstanding
FROM invoices i;

-- Open invoices that still owe something, aged as of now: days past due (negative: not due
-- yet) and the ageing bucket (not_due, 0-30, 31-60, 61-90, over_90).
CREATE OR REPLACE VIEW report_receivables AS
SELECT i.customer_id, i.invoice_id, i.order_id, i.currency, i.total, i.amount_paid, i.outstanding,
       i.issued_at, i.due_at,
       floor(extract(epoch FROM now() - i.due_at) / 86400)::integer AS days_past_due,
       CASE WHEN now() <= i.due_at THEN 'not_due'
            WHEN now() - i.due_at < interval '31 days' THEN '0-30'
            WHEN now() - i.due_at < interval '61 days' THEN '31-60'
            WHEN now() - i.due_at < interval '91 days' THEN '61-90'
            ELSE 'over_90' END AS bucket
FROM report_invoices i
WHERE i.outstanding > 0;

-- Payments received or declined, in their invoice's currency.
CREATE OR REPLACE VIEW report_payments AS
SELECT p.reference, p.order_id, p.invoice_id, i.currency, p.method, p.amount, p.outcome, p.recorded_at
FROM payments p
LEFT JOIN invoices i ON i.invoice_id = p.invoice_id;

-- Refunds, in their invoice's currency.
CREATE OR REPLACE VIEW report_refunds AS
SELECT r.refund_id, r.order_id, r.invoice_id, i.currency, r.amount, r.reason, r.issued_at
FROM refunds r
LEFT JOIN invoices i ON i.invoice_id = r.invoice_id;

-- Every stock movement with the levels of its SKU and warehouse after it (running sums), and
-- whether it emptied the shelf: available (on hand - reserved) fell from above zero to zero or
-- below. Backorders belong to no warehouse (warehouse '').
CREATE OR REPLACE VIEW report_stock_history AS
SELECT h.*,
       h.on_hand_after - h.reserved_after AS available_after,
       (h.on_hand_after - h.reserved_after) <= 0
           AND (h.on_hand_after - h.on_hand) - (h.reserved_after - h.reserved) > 0 AS stock_out
FROM (
    SELECT m.event_id, m.part, m.sku, m.warehouse, m.kind, m.moved_at, m.order_id,
           m.on_hand, m.reserved, m.in_transit, m.backordered,
           sum(m.on_hand) OVER item     AS on_hand_after,
           sum(m.reserved) OVER item    AS reserved_after,
           sum(m.in_transit) OVER item  AS in_transit_after,
           sum(m.backordered) OVER item AS backordered_after
    FROM stock_movements m
    WINDOW item AS (PARTITION BY m.sku, m.warehouse ORDER BY m.moved_at, m.event_id, m.part)
) h;

-- Stock levels now, per SKU and warehouse.
CREATE OR REPLACE VIEW report_stock_levels AS
SELECT m.sku, m.warehouse, sum(m.on_hand) AS on_hand, sum(m.reserved) AS reserved,
       sum(m.on_hand) - sum(m.reserved) AS available, sum(m.in_transit) AS in_transit,
       sum(m.backordered) AS backordered
FROM stock_movements m
GROUP BY m.sku, m.warehouse;

-- Production orders with their lead time and whether they finished after their due date.
CREATE OR REPLACE VIEW report_production AS
SELECT p.*,
       extract(epoch FROM p.completed_at - p.created_at) AS lead_time_seconds,
       (p.due_at IS NOT NULL AND COALESCE(p.completed_at, now()) > p.due_at) AS late
FROM production_orders p;

-- Dimensions a BI tool joins on ---------------------------------------------------------------

CREATE OR REPLACE VIEW dim_date AS
SELECT d::date AS date, extract(isoyear FROM d)::integer AS iso_year,
       extract(week FROM d)::integer AS iso_week, extract(month FROM d)::integer AS month,
       extract(year FROM d)::integer AS year, to_char(d, 'IYYY-"W"IW') AS week_key,
       to_char(d, 'YYYY-MM') AS month_key
FROM generate_series(
    COALESCE((SELECT min(placed_at) FROM orders), now())::date,
    GREATEST(COALESCE((SELECT max(placed_at) FROM orders), now()), now())::date,
    interval '1 day'
) AS d;

CREATE OR REPLACE VIEW dim_channel AS
SELECT channel, count(*) AS orders, min(placed_at) AS first_order_at FROM orders GROUP BY channel;

CREATE OR REPLACE VIEW dim_region AS
SELECT region, count(*) AS orders FROM orders GROUP BY region;
