-- TOTP (RFC 6238) as a second factor of password accounts (SPEC §15).
-- The secret is stored only encrypted (AES-256-GCM under totp.key_file,
-- the user id as associated data): nonce || ciphertext || tag.
-- last_step is the time step (Unix seconds / 30) of the last accepted
-- code: a code of that step or an earlier one is refused, so each code
-- is used once, across replicas (a conditional UPDATE).
-- Times are milliseconds since the Unix epoch.

CREATE TABLE totp (
    user_id    TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret     BLOB NOT NULL,
    last_step  BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Recovery codes, each usable once (deleted when used): only their
-- SHA-256 (hex) is kept. They go with the account's TOTP.
CREATE TABLE totp_recovery (
    user_id   TEXT NOT NULL REFERENCES totp (user_id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    PRIMARY KEY (user_id, code_hash)
);
