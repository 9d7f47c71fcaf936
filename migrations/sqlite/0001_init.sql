-- Core schema (SQLite). Timestamps are microseconds since the Unix epoch;
-- ids are UUIDs stored as 16-byte blobs. Index names match the PostgreSQL
-- migration so constraint violations map to the same API errors.

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    -- At most one key: concurrent first starts race on this and one wins.
    singleton     INTEGER NOT NULL DEFAULT 1 UNIQUE CHECK (singleton = 1),
    private_pkcs8 BLOB NOT NULL,
    public_key    BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_clients (
    client_id   TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    CONSTRAINT api_clients_pkey PRIMARY KEY (client_id)
);

-- Per-account write clock: every customer write takes the next value, so
-- updated_at is unique per account and commits in timestamp order (the
-- change feed of since_datetime can neither miss a write nor stall).
CREATE TABLE account_clocks (
    account_id TEXT PRIMARY KEY,
    last_us    INTEGER NOT NULL
);

CREATE TABLE terms (
    id          BLOB PRIMARY KEY,
    account_id  TEXT NOT NULL,
    terms       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    deleted_at  INTEGER,
    deleted_by  TEXT
);
CREATE INDEX terms_account_idx ON terms (account_id, created_at DESC, id);

CREATE TABLE customers (
    id                BLOB PRIMARY KEY,
    account_id        TEXT NOT NULL,
    customer_id       TEXT NOT NULL,
    customer_id_lower TEXT NOT NULL,
    type              TEXT NOT NULL,
    email             TEXT,
    email_lower       TEXT,
    phone_number      TEXT,
    -- phone_number while the account forbids duplicate phone numbers
    phone_unique      TEXT,
    last_name_lower   TEXT,
    full_name_lower   TEXT,
    doc               TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT NOT NULL,
    updated_at        INTEGER NOT NULL,
    deleted_at        INTEGER,
    deleted_by        TEXT
);
-- Deleted customers keep their customer_id reserved; erasure nulls email and
-- phone, which frees them.
CREATE UNIQUE INDEX customers_customer_id_key ON customers (account_id, customer_id);
-- Also serves email prefix search (account_id, email_lower leading).
CREATE UNIQUE INDEX customers_email_key ON customers (account_id, email_lower, type) WHERE email_lower IS NOT NULL;
CREATE UNIQUE INDEX customers_phone_number_key ON customers (account_id, phone_unique) WHERE phone_unique IS NOT NULL;
CREATE INDEX customers_created_idx ON customers (account_id, created_at DESC, id);
CREATE INDEX customers_updated_idx ON customers (account_id, updated_at, id);
CREATE INDEX customers_phone_idx ON customers (account_id, phone_number);
CREATE INDEX customers_last_name_idx ON customers (account_id, last_name_lower);
-- "first last" (or the one name given): also serves first-name prefixes.
CREATE INDEX customers_full_name_idx ON customers (account_id, full_name_lower);
CREATE INDEX customers_customer_id_lower_idx ON customers (account_id, customer_id_lower);

CREATE TABLE customer_attributes (
    customer_pk BLOB NOT NULL REFERENCES customers (id),
    account_id  TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT
);
CREATE INDEX customer_attributes_lookup_idx ON customer_attributes (account_id, key, value);
CREATE INDEX customer_attributes_customer_idx ON customer_attributes (customer_pk);
