-- Token roles (Vault's auth/token/roles/:name): one JSON document per (tenant, name). No
-- node caches them (each create against a role reads its row), so writes announce nothing.
-- A role goes with its tenant.
CREATE TABLE token_roles (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    role      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
