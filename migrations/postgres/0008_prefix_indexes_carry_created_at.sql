-- The prefix indexes also carry created_at, so a search whose matches lie
-- behind many newer non-matching customers orders its candidates inside the
-- indexes (index-only) instead of walking every newer row. Same names and
-- keys, so nothing else changes.
DROP INDEX customers_email_key;
CREATE UNIQUE INDEX customers_email_key ON customers (account_id, email_lower, type)
    INCLUDE (id, deleted_at, created_at) WHERE email_lower IS NOT NULL;
DROP INDEX customers_phone_idx;
CREATE INDEX customers_phone_idx ON customers (account_id, phone_number) INCLUDE (id, type, deleted_at, created_at);
DROP INDEX customers_last_name_idx;
CREATE INDEX customers_last_name_idx ON customers (account_id, last_name_lower)
    INCLUDE (id, type, deleted_at, created_at);
DROP INDEX customers_full_name_idx;
CREATE INDEX customers_full_name_idx ON customers (account_id, full_name_lower)
    INCLUDE (id, type, deleted_at, created_at);
DROP INDEX customers_customer_id_lower_idx;
CREATE INDEX customers_customer_id_lower_idx ON customers (account_id, customer_id_lower)
    INCLUDE (id, type, deleted_at, created_at);
