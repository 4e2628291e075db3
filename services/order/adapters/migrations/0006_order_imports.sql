-- Order file imports (docs/imports.md, services/order/app/imports.py). An import's progress is
-- its events (order_import streams); this table keeps the uploaded file's bytes until the
-- import is done, and is the work list: a row without finished_at is an import to go on
-- with, taken by one replica at a time (FOR UPDATE SKIP LOCKED).
CREATE TABLE IF NOT EXISTS order_import_files (
    import_id    text PRIMARY KEY,
    file_digest  text        NOT NULL,
    content      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS order_import_files_unfinished
    ON order_import_files (created_at) WHERE finished_at IS NULL;
