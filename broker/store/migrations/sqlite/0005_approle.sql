-- AppRole auth method (Vault API: auth/approle). Roles and secret_ids belong to a tenant and
-- to an approle auth mount; disabling the mount deletes them, deleting a role deletes its
-- secret_ids. Secret_ids are stored only as keyed hashes.
CREATE TABLE approle_roles (
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    mount_id                TEXT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    role_id                 TEXT NOT NULL,
    bind_secret_id          INTEGER NOT NULL,
    secret_id_num_uses      INTEGER NOT NULL,
    secret_id_ttl           INTEGER NOT NULL,
    secret_id_bound_cidrs   TEXT NOT NULL,
    token_bound_cidrs       TEXT NOT NULL,
    token_policies          TEXT NOT NULL,
    token_ttl               INTEGER NOT NULL,
    token_max_ttl           INTEGER NOT NULL,
    token_explicit_max_ttl  INTEGER NOT NULL,
    token_num_uses          INTEGER NOT NULL,
    token_no_default_policy INTEGER NOT NULL,
    created_at              INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, mount_id, name),
    UNIQUE (tenant_id, mount_id, role_id)
);

CREATE TABLE approle_secret_ids (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    mount_id          TEXT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    role_name         TEXT NOT NULL,
    hash              BLOB NOT NULL,
    accessor          TEXT NOT NULL,
    metadata          TEXT NOT NULL,
    cidr_list         TEXT NOT NULL,
    token_bound_cidrs TEXT NOT NULL,
    uses_remaining    INTEGER,
    num_uses          INTEGER NOT NULL,
    ttl               INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    PRIMARY KEY (tenant_id, mount_id, role_name, hash),
    UNIQUE (tenant_id, mount_id, role_name, accessor),
    FOREIGN KEY (tenant_id, mount_id, role_name)
        REFERENCES approle_roles (tenant_id, mount_id, name) ON DELETE CASCADE
);
CREATE INDEX approle_secret_ids_expiry ON approle_secret_ids (mount_id, expires_at);

-- Tokens bound to client addresses (AppRole token_bound_cidrs), checked at every use.
ALTER TABLE tokens ADD COLUMN bound_cidrs TEXT NOT NULL DEFAULT '[]';
