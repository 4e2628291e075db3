-- Returns (issue 13; docs/reporting.md "Returns and credit notes"): billing credits a return's
-- received lines against the order's invoice (CreditNoteIssued). The part of the credit it
-- pays back now is a refund of its own (RefundIssued, in `refunds`); the rest lowers what the
-- invoice still owes.

-- One row per credit note, as the event says it. Its currency and customer are its invoice's:
-- report_credit_notes joins them when read, so a credit note read before its invoice is
-- complete as soon as the invoice is.
CREATE TABLE IF NOT EXISTS credit_notes (
    credit_note_id  text PRIMARY KEY,
    invoice_id      text          NOT NULL,
    order_id        text          NOT NULL,
    return_id       text,
    amount          numeric(14,2) NOT NULL,  -- what the credited lines were invoiced at, tax included
    refund_amount   numeric(14,2) NOT NULL,  -- of it, paid back now (the refund refund_id)
    refund_id       text,
    reason          text          NOT NULL,
    issued_at       timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS credit_notes_by_invoice ON credit_notes (invoice_id);

-- Credit notes with their invoice's currency and customer (NULL until the invoice is read),
-- and `owed_less`: what each took off what the invoice owes (amount - refund_amount).
CREATE OR REPLACE VIEW report_credit_notes AS
SELECT c.credit_note_id, c.invoice_id, c.order_id, i.customer_id, c.return_id, i.currency,
       c.amount, c.refund_amount, c.amount - c.refund_amount AS owed_less, c.refund_id, c.reason,
       c.issued_at
FROM credit_notes c
LEFT JOIN invoices i ON i.invoice_id = c.invoice_id;

-- report_invoices again: what an open invoice still owes is billing's figure, total - credited
-- by returns - (amount_paid - money paid back for goods no longer charged), where the money
-- paid back is a change's (paid_back) and a return's (credit_refunded). So an invoice whose
-- lines were all returned owes nothing (its shipping fee excepted, which is never credited).
-- New columns, after the old ones: `credited` (its credit notes' amounts) and
-- `credit_refunded` (of them, what was paid back).
CREATE OR REPLACE VIEW report_invoices AS
SELECT i.invoice_id, i.order_id, i.customer_id, i.currency, i.subtotal, i.tax, i.shipping_fee,
       i.total, i.amount_paid, i.status, i.payment_terms, i.issued_at, i.due_at, i.paid_at,
       i.voided_at, i.void_reason,
       COALESCE((SELECT sum(r.amount) FROM refunds r WHERE r.invoice_id = i.invoice_id), 0) AS refunded,
       CASE WHEN i.status = 'open'
            THEN i.total - i.amount_paid + i.paid_back - COALESCE(c.credited - c.credit_refunded, 0)
            ELSE 0 END AS outstanding,
       i.paid_back,
       COALESCE(c.credited, 0.00) AS credited,
       COALESCE(c.credit_refunded, 0.00) AS credit_refunded
FROM invoices i
LEFT JOIN (
    SELECT invoice_id, sum(amount) AS credited, sum(refund_amount) AS credit_refunded
    FROM credit_notes GROUP BY invoice_id
) c ON c.invoice_id = i.invoice_id;

-- report_receivables again: as 0002's, with what returns credited on each invoice (its
-- outstanding already counts it).
CREATE OR REPLACE VIEW report_receivables AS
SELECT i.customer_id, i.invoice_id, i.order_id, i.currency, i.total, i.amount_paid, i.outstanding,
       i.issued_at, i.due_at,
       floor(extract(epoch FROM now() - i.due_at) / 86400)::integer AS days_past_due,
       CASE WHEN now() <= i.due_at THEN 'not_due'
            WHEN now() - i.due_at < interval '31 days' THEN '0-30'
            WHEN now() - i.due_at < interval '61 days' THEN '31-60'
            WHEN now() - i.due_at < interval '91 days' THEN '61-90'
            ELSE 'over_90' END AS bucket,
       i.credited
FROM report_invoices i
WHERE i.outstanding > 0;
