-- Response wrapping (Vault's sys/wrapping/*): one row per live wrapping token, keyed by the
-- token's HMAC under the server key (the token itself is never stored). The response is kept
-- only sealed (AES-256-GCM under a secret the root key seals, the AAD naming the tenant and
-- the row's id). Unwrapping deletes the row in the statement that reads it (DELETE …
-- RETURNING), so a token unwraps once; an expired row is never answered and is deleted
-- lazily. A wrapped response goes with its tenant.
CREATE TABLE wrapped_responses (
    hash             BYTEA PRIMARY KEY,
    id               TEXT NOT NULL,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    accessor         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    ttl              BIGINT NOT NULL,
    creation_path    TEXT NOT NULL,
    wrapped_accessor TEXT NOT NULL,
    sealed           BYTEA NOT NULL
);
CREATE INDEX wrapped_responses_expiry ON wrapped_responses (expires_at);
