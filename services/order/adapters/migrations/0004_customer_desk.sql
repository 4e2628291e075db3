-- The order desk's customers (docs/customers.md): merged duplicates point at the customer
-- their orders now count for; names are found by the blind index of each word (the names
-- themselves are sealed), duplicates by the blind index of the whole normalised name.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS merged_into text;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS name_index text;
CREATE INDEX IF NOT EXISTS customers_merged_into ON customers (merged_into);
CREATE INDEX IF NOT EXISTS customers_by_name_index ON customers (name_index);
CREATE INDEX IF NOT EXISTS customers_by_region ON customers (region, customer_id);

CREATE TABLE IF NOT EXISTS customer_name_tokens (
    customer_id  text NOT NULL,
    token        text NOT NULL,
    PRIMARY KEY (customer_id, token)
);
CREATE INDEX IF NOT EXISTS customer_name_tokens_by_token ON customer_name_tokens (token);
