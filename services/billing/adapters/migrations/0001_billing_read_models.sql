-- Billing read models, kept by the projector in the same transaction as the events.

CREATE TABLE IF NOT EXISTS invoices (
    invoice_id      text PRIMARY KEY,
    order_id        text          NOT NULL UNIQUE,
    customer_id     text          NOT NULL,
    currency        text          NOT NULL,
    subtotal        numeric(14,2) NOT NULL,
    tax             numeric(14,2) NOT NULL,
    shipping_fee    numeric(14,2) NOT NULL,
    total           numeric(14,2) NOT NULL,
    amount_paid     numeric(14,2) NOT NULL DEFAULT 0,
    status          text          NOT NULL,  -- open | paid | void
    payment_terms   text          NOT NULL,
    due_at          timestamptz   NOT NULL,
    lines           jsonb         NOT NULL,
    issued_at       timestamptz   NOT NULL
);

-- One row per payment reference: answers a repeated gateway callback and GET /payments.
CREATE TABLE IF NOT EXISTS payments (
    reference    text PRIMARY KEY,
    order_id     text          NOT NULL,
    invoice_id   text          NOT NULL,
    method       text          NOT NULL,
    amount       numeric(14,2) NOT NULL,
    outcome      text          NOT NULL,  -- succeeded | failed
    recorded_at  timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_order ON payments (order_id, recorded_at);

CREATE TABLE IF NOT EXISTS refunds (
    refund_id   text PRIMARY KEY,
    order_id    text          NOT NULL,
    invoice_id  text          NOT NULL,
    amount      numeric(14,2) NOT NULL,
    reason      text          NOT NULL,
    issued_at   timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_by_order ON refunds (order_id, issued_at);

CREATE TABLE IF NOT EXISTS customer_accounts (
    customer_id   text PRIMARY KEY,
    credit_limit  numeric(14,2),  -- NULL: the service's default limit applies
    open_balance  numeric(14,2) NOT NULL DEFAULT 0
);
