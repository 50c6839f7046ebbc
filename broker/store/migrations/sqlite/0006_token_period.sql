-- Periodic tokens (Vault's token period: every renewal gives the period again, no maximum
-- unless an explicit one was set), and the auth mount that issued each token: disabling
-- the mount revokes its tokens and their children; deleting the mount deletes any token it
-- issued meanwhile, and a token cannot be stored for a mount already deleted.
ALTER TABLE tokens ADD COLUMN period INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tokens ADD COLUMN auth_mount_id TEXT REFERENCES mounts(id) ON DELETE CASCADE;
CREATE INDEX tokens_auth_mount ON tokens (tenant_id, auth_mount_id);
ALTER TABLE approle_roles ADD COLUMN token_period INTEGER NOT NULL DEFAULT 0;
