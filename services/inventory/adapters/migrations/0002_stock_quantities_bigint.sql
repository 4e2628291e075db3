-- Stock adds up over receipts without a bound of its own: a busy SKU passes 2^31 units on
-- hand long before any single receipt is large. Every stock quantity column is 64-bit.

ALTER TABLE stock_levels
    ALTER COLUMN on_hand TYPE bigint,
    ALTER COLUMN reserved TYPE bigint;

ALTER TABLE backorders
    ALTER COLUMN quantity TYPE bigint;
