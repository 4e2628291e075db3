-- The catalogue's word on which SKUs are manufactured (inventory's ProductRegistered and
-- ProductUpdated), newest version of each product kept.
CREATE TABLE IF NOT EXISTS known_products (
    sku           text PRIMARY KEY,
    manufactured  boolean NOT NULL,
    version       integer NOT NULL
);
