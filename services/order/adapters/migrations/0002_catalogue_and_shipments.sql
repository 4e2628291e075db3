-- What the order service knows of the product catalogue (inventory owns it; its product
-- events keep this copy current): weights for shipping fees, list prices for the review.
CREATE TABLE IF NOT EXISTS catalogue (
    sku           text PRIMARY KEY,
    name          text           NOT NULL,
    weight_kg     numeric(9, 3)  NOT NULL,
    list_prices   jsonb          NOT NULL DEFAULT '{}',
    manufactured  boolean        NOT NULL DEFAULT false,
    -- The product stream's version: an older event arriving late never overwrites a newer one.
    version       integer        NOT NULL
);

-- The order's shipments as the order follows them (milestones, carrier and tracking).
CREATE TABLE IF NOT EXISTS order_shipments (
    order_id         text        NOT NULL,
    shipment_id      text        NOT NULL,
    warehouse        text        NOT NULL,
    status           text        NOT NULL,
    carrier          text,
    tracking_number  text,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (order_id, shipment_id)
);

-- An order whose stock was revoked after its reservation (a stock adjustment) waits for
-- stock again; this is the status it goes back to when the stock is reserved again.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS status_before_wait text;
