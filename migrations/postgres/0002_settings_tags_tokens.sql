-- Settings, tags, customer tokens and token events (PostgreSQL).

-- The highest numeric customer_id the account has used: the next generated
-- one in `sequence` mode is this + 1 (taken under the clock row's lock).
ALTER TABLE account_clocks ADD COLUMN last_number BIGINT NOT NULL DEFAULT 0;

CREATE TABLE account_settings (
    account_id TEXT PRIMARY KEY,
    doc        JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE tags (
    id         UUID PRIMARY KEY,
    account_id TEXT NOT NULL,
    tag        TEXT NOT NULL,
    metadata   JSONB,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL
);
CREATE UNIQUE INDEX tags_tag_key ON tags (account_id, tag);

CREATE TABLE customer_tags (
    customer_pk UUID NOT NULL REFERENCES customers (id),
    tag_id      UUID NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (customer_pk, tag_id)
);
CREATE INDEX customer_tags_tag_idx ON customer_tags (tag_id, customer_pk);

CREATE TABLE customer_tokens (
    pk          UUID PRIMARY KEY,
    account_id  TEXT NOT NULL,
    token_id    TEXT NOT NULL,
    customer_pk UUID NOT NULL REFERENCES customers (id),
    type        TEXT NOT NULL,
    value       TEXT NOT NULL,
    metadata    JSONB,
    -- the customer field an auto token is derived from; NULL for others
    source      TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    deleted_at  TIMESTAMPTZ,
    deleted_by  TEXT
);
CREATE UNIQUE INDEX customer_tokens_token_id_key ON customer_tokens (account_id, token_id);
-- One live (type, value) per account: a token belongs to one customer.
CREATE UNIQUE INDEX customer_tokens_value_key ON customer_tokens (account_id, type, value) WHERE deleted_at IS NULL;
CREATE INDEX customer_tokens_customer_idx ON customer_tokens (customer_pk, created_at DESC, token_id);

CREATE TABLE token_events (
    id          UUID PRIMARY KEY,
    account_id  TEXT NOT NULL,
    token_type  TEXT NOT NULL,
    token_value TEXT NOT NULL,
    event       TEXT NOT NULL,
    status      TEXT,
    metadata    JSONB,
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    deleted_at  TIMESTAMPTZ,
    deleted_by  TEXT
);
CREATE INDEX token_events_token_idx ON token_events (account_id, token_type, token_value, created_at);
CREATE INDEX token_events_created_idx ON token_events (account_id, created_at, id);
CREATE INDEX token_events_deleted_idx ON token_events (account_id, deleted_at, id);
