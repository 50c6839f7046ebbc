-- A transit key may be bound to a backend key that existed before the broker (an HSM object,
-- a KMS key): the broker never destroys such a key. Asymmetric key versions keep their
-- public key, so reading a key does not call the backend.
ALTER TABLE transit_keys ADD COLUMN bound BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE transit_key_versions ADD COLUMN public_key TEXT;
