-- Events for other services (SPEC §14): every event names its subject —
-- whom it is about (a user's id, `token:<name>` for an API token), the key
-- of its Kafka message and the unit of order. Rows written before this
-- column have '' and are read by their data (UserRegistered: user_id).

ALTER TABLE outbox ADD COLUMN subject TEXT NOT NULL DEFAULT '';
