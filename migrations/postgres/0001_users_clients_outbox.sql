-- Users, clients kept in the database, and the outbox of events (SPEC §7).
-- Times are milliseconds since the Unix epoch; uuids are text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    -- trimmed and ASCII-lower-cased, so the unique index is case-insensitive
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE clients (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('login', 'oauth')),
    secret_hash    TEXT NOT NULL,
    scopes         TEXT NOT NULL DEFAULT '',
    refresh_tokens BOOLEAN NOT NULL DEFAULT FALSE,
    rate_limit     BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);

-- Written in the same transaction as what caused it; deleted by the relay
-- once the sink took it. seq orders delivery.
CREATE TABLE outbox (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
