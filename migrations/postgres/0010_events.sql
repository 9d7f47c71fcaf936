-- The account event log (SPEC §10). `seq` is taken from the account clock
-- under its row lock, so events commit in `seq` order.
ALTER TABLE account_clocks ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE events (
    account_id  TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    id          UUID NOT NULL,
    event       TEXT NOT NULL,
    -- the customer's `id`: history follows it across customer_id changes
    customer_pk UUID,
    customer_id TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    created_by  TEXT NOT NULL,
    request_id  TEXT,
    data        TEXT NOT NULL,
    changes     TEXT,
    CONSTRAINT events_pkey PRIMARY KEY (account_id, seq)
);
CREATE UNIQUE INDEX events_id_key ON events (id);
CREATE INDEX events_customer_idx ON events (account_id, customer_pk, seq) WHERE customer_pk IS NOT NULL;
CREATE INDEX events_created_idx ON events (created_at);

-- Webhook subscriptions (SPEC §11). The secret signs deliveries, so it is
-- kept as given (never returned by the API).
CREATE TABLE hook_subscriptions (
    id              UUID NOT NULL,
    account_id      TEXT NOT NULL,
    url             TEXT NOT NULL,
    secret          TEXT,
    -- `*`, or the event names between commas: `,customer_add,customer_update,`
    events          TEXT NOT NULL,
    active          BIGINT NOT NULL,
    description     TEXT,
    disabled_reason TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    created_by      TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT hook_subscriptions_pkey PRIMARY KEY (id)
);
CREATE INDEX hook_subscriptions_account_idx ON hook_subscriptions (account_id, created_at);

-- One event on its way to one subscription; appended with the event. A
-- ping's delivery carries its own body and no event row.
CREATE TABLE hook_deliveries (
    subscription_id UUID NOT NULL REFERENCES hook_subscriptions (id) ON DELETE CASCADE,
    event_id        UUID NOT NULL,
    account_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    event_seq       BIGINT,
    -- per customer in order: the event's customer
    customer_pk     UUID,
    body            TEXT,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    first_try_at    TIMESTAMPTZ,
    leased_until    TIMESTAMPTZ,
    lease_owner     TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT hook_deliveries_pkey PRIMARY KEY (subscription_id, event_id)
);
CREATE INDEX hook_deliveries_due_idx ON hook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX hook_deliveries_order_idx ON hook_deliveries (subscription_id, customer_pk, event_seq)
    WHERE status = 'pending';
CREATE INDEX hook_deliveries_listed_idx ON hook_deliveries (subscription_id, created_at, event_id);
CREATE INDEX hook_deliveries_event_idx ON hook_deliveries (event_id);

CREATE TABLE hook_attempts (
    subscription_id UUID NOT NULL,
    event_id        UUID NOT NULL,
    attempted_at    TIMESTAMPTZ NOT NULL,
    status_code     BIGINT,
    duration_ms     BIGINT NOT NULL,
    error           TEXT,
    FOREIGN KEY (subscription_id, event_id) REFERENCES hook_deliveries (subscription_id, event_id) ON DELETE CASCADE
);
CREATE INDEX hook_attempts_delivery_idx ON hook_attempts (subscription_id, event_id, attempted_at);
