-- report_order_lines again: a line split across warehouses takes its units in whole numbers
-- (quantity x reserved here / reserved in all, integer division; the last warehouse takes the
-- rest), where 0002 multiplied by a rounded share and could give a warehouse 0.99 -> 0 units.
-- Amounts: the same shares of net, tax and gross, rounded to the cent, the rest to the last.
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
           COALESCE(a.quantity, p.quantity)                        AS allocated,
           COALESCE(sum(a.quantity) OVER line, p.quantity)         AS allocated_in_all,
           row_number() OVER (PARTITION BY p.order_id, p.line_no ORDER BY a.warehouse) AS part,
           count(*) OVER line AS parts
    FROM priced p
    LEFT JOIN order_allocations a ON a.order_id = p.order_id AND a.sku = p.sku
    WINDOW line AS (PARTITION BY p.order_id, p.line_no)
), rounded AS (
    SELECT s.*,
           s.quantity * s.allocated / s.allocated_in_all                     AS units_part,
           round(s.net * s.allocated / s.allocated_in_all, 2)               AS net_part,
           round(s.tax * s.allocated / s.allocated_in_all, 2)               AS tax_part,
           round(s.gross * s.allocated / s.allocated_in_all, 2)             AS gross_part
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
