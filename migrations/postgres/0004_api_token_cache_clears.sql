-- API-token revocations the cache (Redis) may not know yet (SPEC §11,
-- "Revocation is not lost"). Written in the same transaction as
-- api_tokens.revoked_at; deleted once the token's tombstone is in the cache.
-- Every replica retries the rows left here (Redis was down, or the
-- revoking process could not reach it) until the cache takes them.

CREATE TABLE api_token_cache_clears (
    token_hash TEXT PRIMARY KEY,
    -- when the clear was asked for (ms since the Unix epoch); oldest first
    revoked_at BIGINT NOT NULL
);
