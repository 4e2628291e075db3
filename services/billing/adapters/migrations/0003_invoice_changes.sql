-- The order desk's changes to invoices (InvoiceAdjusted, docs/billing.md): one row per invoice a
-- change touched. An amendment's row is on its order; a split's or a merge's on each source
-- (moved_out, other_order_id: where to) and on the new order (moved_in, other_order_id: from where).
CREATE TABLE IF NOT EXISTS invoice_changes (
    order_id        text          NOT NULL,
    change_id       text          NOT NULL,  -- the amendment's or the move's id
    kind            text          NOT NULL,  -- amendment | moved_out | moved_in
    other_order_id  text          NOT NULL DEFAULT '',
    document_id     text,                    -- SUP-... (supplementary invoice) or CN-... (credit note)
    previous_total  numeric(14,2),           -- NULL on moved_in rows
    total           numeric(14,2),
    difference      numeric(14,2) NOT NULL,  -- moved_in: the value moved in
    refund_id       text,
    refund_amount   numeric(14,2) NOT NULL DEFAULT 0,
    transferred     numeric(14,2) NOT NULL DEFAULT 0,
    recorded_at     timestamptz   NOT NULL,
    PRIMARY KEY (order_id, change_id, kind, other_order_id)
);

-- The credit note a refund pays out (a return's, an amendment's, a merge's), if any.
ALTER TABLE refunds ADD COLUMN IF NOT EXISTS credit_note_id text;
