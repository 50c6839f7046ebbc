-- Vault's per-key options beyond the versions (`transit/keys/:name`): derived keys and
-- convergent encryption (fixed at creation), exportable and plaintext backup (one-way to
-- true), whether the key's material was imported (BYOK or restore) and may then rotate, and an `hmac` key's
-- size in bytes (0 for other types).
ALTER TABLE transit_keys ADD COLUMN derived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transit_keys ADD COLUMN convergent_encryption INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transit_keys ADD COLUMN exportable INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transit_keys ADD COLUMN allow_plaintext_backup INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transit_keys ADD COLUMN imported INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transit_keys ADD COLUMN imported_key_allow_rotation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE transit_keys ADD COLUMN key_size INTEGER NOT NULL DEFAULT 0;
