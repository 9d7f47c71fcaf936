-- The prefix indexes carry created_at instead of id, so a search whose
-- matches lie behind many newer non-matching customers orders its candidates
-- inside the indexes instead of walking every newer row. id was not read
-- from them any more: every SQLite index holds the rowid, through which
-- candidates join back (an 8-byte integer in place of a 16-byte blob). The
-- unique email index keeps its key: extra key columns would change what it
-- makes unique.
DROP INDEX customers_phone_idx;
CREATE INDEX customers_phone_idx ON customers (account_id, phone_number, type, deleted_at, created_at);
DROP INDEX customers_last_name_idx;
CREATE INDEX customers_last_name_idx ON customers (account_id, last_name_lower, type, deleted_at, created_at);
DROP INDEX customers_full_name_idx;
CREATE INDEX customers_full_name_idx ON customers (account_id, full_name_lower, type, deleted_at, created_at);
DROP INDEX customers_customer_id_lower_idx;
CREATE INDEX customers_customer_id_lower_idx ON customers (account_id, customer_id_lower, type, deleted_at, created_at);
-- Dropping an index drops its statistics.
ANALYZE customers;
