-- Trimming a transit key (`transit/keys/:name/trim`) deletes its versions below
-- `min_available_version` for good; 0 until the key is first trimmed, as Vault reports it.
ALTER TABLE transit_keys ADD COLUMN min_available_version INTEGER NOT NULL DEFAULT 0;
