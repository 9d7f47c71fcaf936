-- Upstream's customer shape (SPEC §4.1). Numbered as PostgreSQL's: from here
-- on both folders share versions.
-- A customer's password and PIN, as Argon2 hashes: kept apart from the
-- document, which answers return as stored. Erasure nulls them.
ALTER TABLE customers ADD COLUMN password_hash TEXT;
ALTER TABLE customers ADD COLUMN pin_hash TEXT;

-- Erased customers keep their type: the document holds it and nothing else.
UPDATE customers SET doc = json_object('type', type) WHERE deleted_at IS NOT NULL;

-- company.number_of_employees is a string upstream; stored numbers become
-- their decimal text.
UPDATE customers
SET doc = json_set(doc, '$.company.number_of_employees',
                   CAST(json_extract(doc, '$.company.number_of_employees') AS TEXT))
WHERE doc LIKE '%"number_of_employees"%'
  AND json_type(doc, '$.company.number_of_employees') IN ('integer', 'real');

-- The customer an idempotent create made, so that erasing it also scrubs the
-- replayable response (a copy of the person's data).
ALTER TABLE idempotency_keys ADD COLUMN customer_pk BLOB;
UPDATE idempotency_keys SET customer_pk = unhex(replace(json_extract(response, '$.id'), '-', ''))
WHERE response <> '';
CREATE INDEX idempotency_keys_customer_idx ON idempotency_keys (customer_pk) WHERE customer_pk IS NOT NULL;
