-- Vault's per-key options beyond the versions (`transit/keys/:name`): derived keys and
-- convergent encryption (fixed at creation), exportable and plaintext backup (one-way to
-- true), whether the key's material was imported (BYOK or restore) and may then rotate, and an `hmac` key's
-- size in bytes (0 for other types).
ALTER TABLE transit_keys ADD COLUMN derived BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE transit_keys ADD COLUMN convergent_encryption BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE transit_keys ADD COLUMN exportable BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE transit_keys ADD COLUMN allow_plaintext_backup BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE transit_keys ADD COLUMN imported BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE transit_keys ADD COLUMN imported_key_allow_rotation BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE transit_keys ADD COLUMN key_size BIGINT NOT NULL DEFAULT 0;
