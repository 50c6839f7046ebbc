-- Mount storage: JSON documents any engine or auth method keeps under keys of its own, per
-- (tenant, mount), each with a version that writes compare and set (1 on creation, one more
-- at each write). An entry belongs to a mount of its own tenant (the composite foreign key,
-- which needs the unique index on mounts); deleting the mount, or the tenant with its
-- mounts, deletes its entries. Keys compare and sort bytewise (SQLite's BINARY collation),
-- as in PostgreSQL, and the primary key serves listings by prefix.
CREATE UNIQUE INDEX mounts_tenant_id ON mounts (tenant_id, id);

CREATE TABLE mount_entries (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    mount_id  TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    version   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, mount_id, key),
    FOREIGN KEY (tenant_id, mount_id) REFERENCES mounts (tenant_id, id) ON DELETE CASCADE
);
