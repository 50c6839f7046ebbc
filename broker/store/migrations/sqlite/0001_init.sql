-- keybroker schema, SQLite. Ids are UUID text; times are Unix seconds.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES ('00000000-0000-0000-0000-000000000000', 'root', 0);

CREATE TABLE mounts (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    path        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, path)
);

CREATE TABLE tokens (
    hash         BLOB PRIMARY KEY,
    accessor     TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    policies     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER
);

CREATE TABLE transit_keys (
    id                     TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL REFERENCES tenants(id),
    mount_id               TEXT NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    key_type               TEXT NOT NULL,
    backend                TEXT NOT NULL,
    mode                   TEXT NOT NULL,
    backend_reference      TEXT,
    min_decryption_version INTEGER NOT NULL,
    min_encryption_version INTEGER NOT NULL,
    deletion_allowed       INTEGER NOT NULL,
    auto_rotate_period     INTEGER NOT NULL,
    latest_version         INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    rotated_at             INTEGER NOT NULL,
    UNIQUE (tenant_id, mount_id, name)
);

CREATE TABLE transit_key_versions (
    key_id            TEXT NOT NULL REFERENCES transit_keys(id) ON DELETE CASCADE,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id),
    version           INTEGER NOT NULL,
    backend_reference TEXT NOT NULL,
    wrapped_dek       BLOB,
    payload_format    INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    counter_reserved  INTEGER NOT NULL,
    counter_previous  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, version)
);
