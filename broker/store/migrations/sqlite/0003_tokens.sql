-- Token lifetimes, use counts, parents and metadata (Vault's token model).
ALTER TABLE tokens ADD COLUMN ttl INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN max_expires_at INTEGER;
ALTER TABLE tokens ADD COLUMN uses_remaining INTEGER;
ALTER TABLE tokens ADD COLUMN parent_accessor TEXT;
ALTER TABLE tokens ADD COLUMN meta TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tokens ADD COLUMN renewable INTEGER NOT NULL DEFAULT 0;
CREATE INDEX tokens_parent ON tokens (tenant_id, parent_accessor);
CREATE INDEX tokens_expiry ON tokens (expires_at);
