-- Mount storage: JSON documents any engine or auth method keeps under keys of its own, per
-- (tenant, mount), each with a version that writes compare and set (1 on creation, one more
-- at each write). An entry belongs to a mount of its own tenant (the composite foreign key,
-- which needs the unique constraint on mounts); deleting the mount, or the tenant with its
-- mounts, deletes its entries. Keys use the "C" collation, so they compare and sort
-- bytewise as in SQLite, and the primary key serves listings by prefix. Values are JSON
-- text, as every other JSON column.
ALTER TABLE mounts ADD CONSTRAINT mounts_tenant_id UNIQUE (tenant_id, id);

CREATE TABLE mount_entries (
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    mount_id  TEXT NOT NULL,
    key       TEXT COLLATE "C" NOT NULL,
    value     TEXT NOT NULL,
    version   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, mount_id, key),
    FOREIGN KEY (tenant_id, mount_id) REFERENCES mounts (tenant_id, id) ON DELETE CASCADE
);
