# A service that encrypts and decrypts with keys named app-* in its tenant's transit mount,
# and may read those keys' metadata. Nothing else: no key creation, rotation or deletion.
path "transit/encrypt/app-*" {
  capabilities = ["update"]
}

path "transit/decrypt/app-*" {
  capabilities = ["update"]
}

path "transit/keys/app-*" {
  capabilities = ["read"]
}
