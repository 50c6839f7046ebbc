-- keybroker schema, PostgreSQL: the SQLite schema (migrations/sqlite/0001..0006) in one
-- file, with the same tables, columns, keys, cascades and indexes. Ids are UUID text;
-- times are Unix seconds; lists and maps are JSON in TEXT columns, exactly as in SQLite, so
-- rows decode the same way. Columns that listings sort by use the "C" collation, so the
-- order is byte order whatever the database's locale (as in SQLite).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES ('00000000-0000-0000-0000-000000000000', 'root', 0);

CREATE TABLE mounts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    path        TEXT COLLATE "C" NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, path)
);

-- Deleting an auth mount deletes any token it issued (auth_mount_id), and a token cannot be
-- stored for a mount already deleted.
CREATE TABLE tokens (
    hash            BYTEA PRIMARY KEY,
    accessor        TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    policies        TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT,
    ttl             BIGINT NOT NULL DEFAULT 0,
    max_expires_at  BIGINT,
    uses_remaining  BIGINT,
    parent_accessor TEXT,
    meta            TEXT NOT NULL DEFAULT '{}',
    renewable       BOOLEAN NOT NULL DEFAULT FALSE,
    bound_cidrs     TEXT NOT NULL DEFAULT '[]',
    period          BIGINT NOT NULL DEFAULT 0,
    auth_mount_id   TEXT REFERENCES mounts(id) ON DELETE CASCADE
);
CREATE INDEX tokens_parent ON tokens (tenant_id, parent_accessor);
CREATE INDEX tokens_expiry ON tokens (expires_at);
CREATE INDEX tokens_auth_mount ON tokens (tenant_id, auth_mount_id);

CREATE TABLE transit_keys (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants(id),
    mount_id               TEXT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    name                   TEXT COLLATE "C" NOT NULL,
    key_type               TEXT NOT NULL,
    backend                TEXT NOT NULL,
    mode                   TEXT NOT NULL,
    backend_reference      TEXT,
    min_decryption_version BIGINT NOT NULL,
    min_encryption_version BIGINT NOT NULL,
    deletion_allowed       BOOLEAN NOT NULL,
    auto_rotate_period     BIGINT NOT NULL,
    latest_version         BIGINT NOT NULL,
    created_at             BIGINT NOT NULL,
    rotated_at             BIGINT NOT NULL,
    UNIQUE (tenant_id, mount_id, name)
);

CREATE TABLE transit_key_versions (
    key_id            TEXT NOT NULL REFERENCES transit_keys(id) ON DELETE CASCADE,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    version           BIGINT NOT NULL,
    backend_reference TEXT NOT NULL,
    wrapped_dek       BYTEA,
    payload_format    BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    counter_reserved  BIGINT NOT NULL,
    counter_previous  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, version)
);

-- Audit chain checkpoints: the highest (sequence, chain head) written by each audit sink,
-- so `keybroker audit verify` detects a truncated log tail.
CREATE TABLE audit_checkpoints (
    sink     TEXT PRIMARY KEY,
    sequence BIGINT NOT NULL,
    head     BYTEA NOT NULL
);

-- ACL policies per tenant (Vault HCL text, parsed and checked before it is stored).
CREATE TABLE policies (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT COLLATE "C" NOT NULL,
    text       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- AppRole auth method (Vault API: auth/approle). Roles and secret_ids belong to a tenant and
-- to an approle auth mount; disabling the mount deletes them, deleting a role deletes its
-- secret_ids. Secret_ids are stored only as keyed hashes.
CREATE TABLE approle_roles (
    tenant_id               TEXT NOT NULL REFERENCES tenants(id),
    mount_id                TEXT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    name                    TEXT COLLATE "C" NOT NULL,
    role_id                 TEXT NOT NULL,
    bind_secret_id          BOOLEAN NOT NULL,
    secret_id_num_uses      BIGINT NOT NULL,
    secret_id_ttl           BIGINT NOT NULL,
    secret_id_bound_cidrs   TEXT NOT NULL,
    token_bound_cidrs       TEXT NOT NULL,
    token_policies          TEXT NOT NULL,
    token_ttl               BIGINT NOT NULL,
    token_max_ttl           BIGINT NOT NULL,
    token_explicit_max_ttl  BIGINT NOT NULL,
    token_num_uses          BIGINT NOT NULL,
    token_no_default_policy BOOLEAN NOT NULL,
    created_at              BIGINT NOT NULL,
    token_period            BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, mount_id, name),
    UNIQUE (tenant_id, mount_id, role_id)
);

CREATE TABLE approle_secret_ids (
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    mount_id          TEXT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    role_name         TEXT COLLATE "C" NOT NULL,
    hash              BYTEA NOT NULL,
    accessor          TEXT COLLATE "C" NOT NULL,
    metadata          TEXT NOT NULL,
    cidr_list         TEXT NOT NULL,
    token_bound_cidrs TEXT NOT NULL,
    uses_remaining    BIGINT,
    num_uses          BIGINT NOT NULL,
    ttl               BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT,
    PRIMARY KEY (tenant_id, mount_id, role_name, hash),
    UNIQUE (tenant_id, mount_id, role_name, accessor),
    FOREIGN KEY (tenant_id, mount_id, role_name)
        REFERENCES approle_roles (tenant_id, mount_id, name) ON DELETE CASCADE
);
CREATE INDEX approle_secret_ids_expiry ON approle_secret_ids (mount_id, expires_at);
