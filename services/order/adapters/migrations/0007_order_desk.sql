-- The order desk's changes (docs/order-desk.md): while a change waits for a person's decision
-- the order reads on_hold; the status it goes back to is kept here until then.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS status_before_change text;
