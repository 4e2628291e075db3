-- The order desk (issue 15; docs/reporting.md "Amended, split and merged orders"): an order's
-- lines and invoice change after it was placed, units move into a new order (split) or whole
-- orders into one (merge), and money moves between invoices.

-- Where an order came from (split / merge, NULL: placed by a channel), the order a split took
-- its units from, and the order a merged one went into.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS origin text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS split_from text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS merged_into text;

-- When inventory or the order said the allocation was this: an older word (an inventory
-- answer read after a newer status change of the order) does not replace a newer one.
ALTER TABLE order_allocations ADD COLUMN IF NOT EXISTS noted_at timestamptz;

-- Money paid on the invoice that no longer pays for its goods: refunded by a change's credit
-- note (an amendment down). What an open invoice still owes is total - amount_paid + paid_back.
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS paid_back numeric(14,2) NOT NULL DEFAULT 0;

-- report_order_lines again: an order line takes its invoiced amounts from the invoice line of
-- the same SKU in the same place among that SKU's lines (the first line of a SKU from the
-- first invoice line of it, ...), not from the invoice line of the same number: a split's
-- invoice lists the moved units by SKU, the order in the order they had. A merged order's
-- lines moved into the order it was merged into: here they have no units and no amounts.
-- (A line's units per warehouse are divided in whole numbers: the sum of its allocation is
-- cast to bigint, where 0003's numeric sum gave fractions of a unit.)
CREATE OR REPLACE VIEW report_order_lines AS
WITH ordered AS (
    SELECT l.*, row_number() OVER (PARTITION BY l.order_id, l.sku ORDER BY l.line_no) AS nth
    FROM order_lines l
), invoiced AS (
    SELECT il.*, row_number() OVER (PARTITION BY il.order_id, il.sku ORDER BY il.line_no) AS nth
    FROM invoice_lines il
), priced AS (
    SELECT l.order_id, l.line_no, l.sku,
           CASE WHEN o.status = 'merged' THEN 0 ELSE l.quantity END AS quantity,
           CASE WHEN o.status = 'merged' THEN 0
                ELSE COALESCE(il.net, l.quantity * l.unit_price) END AS net,
           CASE WHEN o.status = 'merged' THEN 0 ELSE COALESCE(il.tax, 0) END AS tax,
           CASE WHEN o.status = 'merged' THEN 0
                ELSE COALESCE(il.gross, l.quantity * l.unit_price) END AS gross
    FROM ordered l
    JOIN orders o ON o.order_id = l.order_id
    LEFT JOIN invoiced il ON il.order_id = l.order_id AND il.sku = l.sku AND il.nth = l.nth
), split AS (
    SELECT p.*, a.warehouse,
           COALESCE(a.quantity, p.quantity)                        AS allocated,
           COALESCE(sum(a.quantity) OVER line, p.quantity)::bigint AS allocated_in_all,
           row_number() OVER (PARTITION BY p.order_id, p.line_no ORDER BY a.warehouse) AS part,
           count(*) OVER line AS parts
    FROM priced p
    LEFT JOIN order_allocations a ON a.order_id = p.order_id AND a.sku = p.sku
    WINDOW line AS (PARTITION BY p.order_id, p.line_no)
), rounded AS (
    SELECT s.*,
           s.quantity * s.allocated / NULLIF(s.allocated_in_all, 0)          AS units_part,
           round(s.net * s.allocated / NULLIF(s.allocated_in_all, 0), 2)     AS net_part,
           round(s.tax * s.allocated / NULLIF(s.allocated_in_all, 0), 2)     AS tax_part,
           round(s.gross * s.allocated / NULLIF(s.allocated_in_all, 0), 2)   AS gross_part
    FROM split s
)
SELECT r.order_id, r.line_no, r.sku, pr.category, r.warehouse,
       o.channel, o.customer_id, o.region, o.country, o.status, o.currency, o.placed_at,
       CASE WHEN r.part = r.parts THEN r.quantity - COALESCE(sum(r.units_part) OVER line, 0)
                                       + COALESCE(r.units_part, 0)
            ELSE COALESCE(r.units_part, 0) END AS units,
       CASE WHEN r.part = r.parts THEN r.net - COALESCE(sum(r.net_part) OVER line, 0)
                                       + COALESCE(r.net_part, 0)
            ELSE COALESCE(r.net_part, 0) END AS net_amount,
       CASE WHEN r.part = r.parts THEN r.tax - COALESCE(sum(r.tax_part) OVER line, 0)
                                       + COALESCE(r.tax_part, 0)
            ELSE COALESCE(r.tax_part, 0) END AS tax_amount,
       CASE WHEN r.part = r.parts THEN r.gross - COALESCE(sum(r.gross_part) OVER line, 0)
                                       + COALESCE(r.gross_part, 0)
            ELSE COALESCE(r.gross_part, 0) END AS gross_amount
FROM rounded r
JOIN orders o ON o.order_id = r.order_id
LEFT JOIN products pr ON pr.sku = r.sku
WINDOW line AS (PARTITION BY r.order_id, r.line_no);

-- report_invoices again: what an open invoice still owes counts the money a change's credit
-- note paid back as no longer paid; merged invoices (closed into another order's) owe nothing.
CREATE OR REPLACE VIEW report_invoices AS
SELECT i.invoice_id, i.order_id, i.customer_id, i.currency, i.subtotal, i.tax, i.shipping_fee,
       i.total, i.amount_paid, i.status, i.payment_terms, i.issued_at, i.due_at, i.paid_at,
       i.voided_at, i.void_reason,
       COALESCE((SELECT sum(r.amount) FROM refunds r WHERE r.invoice_id = i.invoice_id), 0) AS refunded,
       CASE WHEN i.status = 'open' THEN i.total - i.amount_paid + i.paid_back ELSE 0 END AS outstanding,
       i.paid_back
FROM invoices i;
