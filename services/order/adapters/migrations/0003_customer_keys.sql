-- Personal data (docs/personal-data.md): a data key per customer. Deleting a customer's row
-- erases every field sealed with its key, in the events and in the read models.
CREATE TABLE IF NOT EXISTS customer_keys (
    subject_id   text PRIMARY KEY,
    -- in every ciphertext: a key created after an erasure does not open what the old one sealed
    key_id       text        NOT NULL,
    wrapped_key  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The service's own secrets (the blind index key), created on first use.
CREATE TABLE IF NOT EXISTS personal_data_secrets (
    name            text PRIMARY KEY,
    wrapped_secret  bytea NOT NULL
);

-- Registered customers are found by the blind index of their email and phone; the name,
-- email and phone columns hold sealed values (rows written before this migration: plaintext).
ALTER TABLE customers ADD COLUMN IF NOT EXISTS email_index text;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS phone_index text;
ALTER TABLE customers ADD COLUMN IF NOT EXISTS erased_at timestamptz;
CREATE INDEX IF NOT EXISTS customers_by_email_index ON customers (email_index);
CREATE INDEX IF NOT EXISTS customers_by_phone_index ON customers (phone_index);

-- Guests (not registered) who gave an email or phone: the customer id their orders share,
-- found by the contact's blind index. Deleted with the key when the guest is erased.
CREATE TABLE IF NOT EXISTS subject_indexes (
    blind_index  text PRIMARY KEY,
    subject_id   text NOT NULL
);
CREATE INDEX IF NOT EXISTS subject_indexes_by_subject ON subject_indexes (subject_id);
