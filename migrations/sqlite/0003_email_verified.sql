-- Whether an account's email was verified (SPEC §11: only verified emails
-- are asserted to apps). Self-registered accounts are not; a trusted login
-- client may register one verified. Accounts made before this column were
-- never verified either, so they start unverified.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
