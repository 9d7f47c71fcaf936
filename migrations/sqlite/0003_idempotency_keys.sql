-- Idempotency-Key of POST /customers/users: the first request's body digest
-- and response, per account. The primary key makes concurrent retries of one
-- key wait for, and then replay, the first (kept at least 24 hours).
CREATE TABLE idempotency_keys (
    account_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    etag        TEXT NOT NULL,
    response    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (account_id, created_at);
