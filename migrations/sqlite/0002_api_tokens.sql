-- API tokens for services (SPEC §9): long-lived opaque tokens. Only the
-- SHA-256 of a token is kept (hex); the token itself is shown once.
-- Times are milliseconds since the Unix epoch; NULL = never / not yet.

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    -- space-separated
    scopes       TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    -- written behind, at most once a minute per token
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_created ON api_tokens (created_at);
