-- A token's tree crosses tenants: a root-namespace token may create tokens inside a tenant,
-- and revoking it (or disabling the auth mount that issued it) revokes them too. The walk
-- goes by parent accessor alone (accessors are unique across tenants).
DROP INDEX tokens_parent;
CREATE INDEX tokens_parent ON tokens (parent_accessor);
