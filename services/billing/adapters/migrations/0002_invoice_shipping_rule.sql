-- Which shipping fee rule an invoice applied (InvoiceIssued.shipping_rule); empty before the rules.
ALTER TABLE invoices ADD COLUMN IF NOT EXISTS shipping_rule text NOT NULL DEFAULT '';
