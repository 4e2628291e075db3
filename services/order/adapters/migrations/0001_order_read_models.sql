-- Order read models and saga bookkeeping, kept in the same transaction as the events.

CREATE TABLE IF NOT EXISTS orders (
    order_id          text PRIMARY KEY,
    status            text        NOT NULL,
    stage             text        NOT NULL,
    channel           text        NOT NULL,
    external_id       text,
    customer_id       text        NOT NULL,
    customer_name     text        NOT NULL,
    currency          text        NOT NULL,
    payment_terms     text        NOT NULL,
    shipping_method   text        NOT NULL,
    lines             jsonb       NOT NULL,
    fingerprint       text        NOT NULL,
    subtotal          numeric(14, 2) NOT NULL,
    total             numeric(14, 2),
    amount_paid       numeric(14, 2) NOT NULL DEFAULT 0,
    amount_refunded   numeric(14, 2) NOT NULL DEFAULT 0,
    invoice_id        text,
    reason            text,
    placed_at         timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_time ON orders (placed_at DESC, order_id DESC);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, placed_at DESC);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, placed_at DESC);
CREATE INDEX IF NOT EXISTS orders_by_fingerprint ON orders (fingerprint, placed_at DESC);

-- One row per submission key (Idempotency-Key, or channel + external id): the same
-- submission returns the same order; the same key with another body is refused.
CREATE TABLE IF NOT EXISTS order_submissions (
    submission_key  text PRIMARY KEY,
    order_id        text        NOT NULL,
    body_hash       text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS customers (
    customer_id  text PRIMARY KEY,
    name         text    NOT NULL,
    email        text,
    phone        text,
    region       text,
    blocked      boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS customers_by_email ON customers (email);
CREATE INDEX IF NOT EXISTS customers_by_phone ON customers (phone);

-- Persisted saga deadlines: payment deadlines and compensation retries. A restarted service
-- picks them up where it stopped.
CREATE TABLE IF NOT EXISTS saga_deadlines (
    order_id  text        NOT NULL,
    kind      text        NOT NULL,
    due_at    timestamptz NOT NULL,
    PRIMARY KEY (order_id, kind)
);
CREATE INDEX IF NOT EXISTS saga_deadlines_due ON saga_deadlines (due_at);
