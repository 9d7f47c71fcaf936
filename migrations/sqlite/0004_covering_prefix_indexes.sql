-- The prefix indexes also carry what `total=true` needs to count without
-- reading the table (covering indexes): the id, and the type and deletion
-- time the count's scope checks. Same names, so nothing else changes. (The
-- unique email index keeps its key: extra key columns would change what
-- it makes unique.)
DROP INDEX customers_phone_idx;
CREATE INDEX customers_phone_idx ON customers (account_id, phone_number, type, deleted_at, id);
DROP INDEX customers_last_name_idx;
CREATE INDEX customers_last_name_idx ON customers (account_id, last_name_lower, type, deleted_at, id);
DROP INDEX customers_full_name_idx;
CREATE INDEX customers_full_name_idx ON customers (account_id, full_name_lower, type, deleted_at, id);
DROP INDEX customers_customer_id_lower_idx;
CREATE INDEX customers_customer_id_lower_idx ON customers (account_id, customer_id_lower, type, deleted_at, id);
-- Dropping an index drops its statistics; without them the planner can walk
-- the wrong index for a large account.
ANALYZE customers;
