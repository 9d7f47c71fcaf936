-- Upstream's customer shape (SPEC §4.1).
-- A customer's password and PIN, as Argon2 hashes: kept apart from the
-- document, which answers return as stored. Erasure nulls them.
ALTER TABLE customers ADD COLUMN password_hash TEXT;
ALTER TABLE customers ADD COLUMN pin_hash TEXT;

-- Erased customers keep their type: the document holds it and nothing else.
UPDATE customers SET doc = jsonb_build_object('type', type)::text WHERE deleted_at IS NOT NULL;

-- company.number_of_employees is a string upstream; stored numbers become
-- their decimal text.
UPDATE customers
SET doc = jsonb_set(doc::jsonb, '{company,number_of_employees}',
                    to_jsonb((doc::jsonb #>> '{company,number_of_employees}')))::text
WHERE doc LIKE '%"number_of_employees"%'
  AND jsonb_typeof(doc::jsonb #> '{company,number_of_employees}') = 'number';

-- The customer an idempotent create made, so that erasing it also scrubs the
-- replayable response (a copy of the person's data).
ALTER TABLE idempotency_keys ADD COLUMN customer_pk UUID;
UPDATE idempotency_keys SET customer_pk = (response::jsonb ->> 'id')::uuid WHERE response <> '';
CREATE INDEX idempotency_keys_customer_idx ON idempotency_keys (customer_pk) WHERE customer_pk IS NOT NULL;
