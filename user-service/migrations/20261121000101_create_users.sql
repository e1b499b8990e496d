-- Accounts. Emails are stored lower-cased, so the unique index is case-blind.
CREATE TABLE users (
    id             UUID PRIMARY KEY,
    name           TEXT NOT NULL CHECK (name <> ''),
    company        TEXT NOT NULL DEFAULT '',
    email          TEXT NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash  TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- GetAll pages through users in this order.
CREATE INDEX users_by_creation ON users (created_at, id);

-- Events written in the same transaction as the change they announce, and
-- relayed to NATS JetStream by the outbox relay.
CREATE TABLE outbox (
    id            UUID PRIMARY KEY,          -- the event id, sent as Nats-Msg-Id
    subject       TEXT NOT NULL,
    payload       BYTEA NOT NULL,            -- protobuf-encoded event
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

CREATE INDEX outbox_pending ON outbox (created_at, id) WHERE published_at IS NULL;
