-- ACL policies per tenant (Vault HCL text, parsed and checked before it is stored).
CREATE TABLE policies (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    text       TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
