"""Checks the keybroker Azure Key Vault fake with the official Python SDK.

Run by tests/azure-fake/tests/python_sdk.rs, which starts the fake and passes it here:
  AZURE_FAKE_VAULT_URL, AZURE_FAKE_AUTHORITY_HOST, AZURE_FAKE_CA_PEM,
  AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET,
  AZURE_FAKE_REMOTE_RSA, AZURE_FAKE_REMOTE_EC: names of keys the test made whose Get Key the
    fake refuses (403), so CryptographyClient does every operation remotely,
  AZURE_FAKE_THROTTLED: how many 429s (Retry-After: 1) the first authenticated request meets.
Exits 0 when every check passes; otherwise prints each failure and exits 1.
"""

import hashlib
import os
import sys
import time
import traceback

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient, KeyType
from azure.keyvault.keys.crypto import (
    CryptographyClient,
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
    SignatureAlgorithm,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

ENV = os.environ
VAULT = ENV["AZURE_FAKE_VAULT_URL"]
AUTHORITY = ENV["AZURE_FAKE_AUTHORITY_HOST"]
CA = ENV["AZURE_FAKE_CA_PEM"]
TENANT = ENV["AZURE_TENANT_ID"]
CLIENT = ENV["AZURE_CLIENT_ID"]
SECRET = ENV["AZURE_CLIENT_SECRET"]

failures = []


def check(name, fn):
    try:
        fn()
        print(f"ok   {name}")
    except Exception:  # every failure is reported, then the next check runs
        failures.append(name)
        print(f"FAIL {name}\n{traceback.format_exc()}")


def credential(secret=SECRET):
    # The fake is the authority host; MSAL must not ask login.microsoftonline.com about it.
    return ClientSecretCredential(
        TENANT, CLIENT, secret, authority=AUTHORITY, disable_instance_discovery=True, connection_verify=CA
    )


# The vault is not on *.vault.azure.net, so the challenge's resource cannot match its domain.
CLIENT_OPTIONS = {"verify_challenge_resource": False, "connection_verify": CA}
CRED = credential()
KEYS = KeyClient(VAULT, CRED, **CLIENT_OPTIONS)
DIGEST = hashlib.sha256(b"keybroker azure fake").digest()
state = {}


def rsa_public(key):
    numbers = rsa.RSAPublicNumbers(int.from_bytes(key.key.e, "big"), int.from_bytes(key.key.n, "big"))
    return numbers.public_key()


def ec_public(key):
    assert key.key.crv == "P-256", key.key.crv
    x, y = int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def create_rsa_after_throttling():
    expected = int(ENV.get("AZURE_FAKE_THROTTLED", "0"))
    started = time.monotonic()
    key = KEYS.create_rsa_key("py-rsa", size=2048, tags={"purpose": "fidelity"})
    elapsed = time.monotonic() - started
    # The SDK waited Retry-After (1 s) after each 429 before succeeding.
    assert elapsed >= expected * 0.9, f"{expected} throttled responses but only {elapsed:.2f}s spent"
    assert key.key_type == KeyType.rsa, key.key_type
    assert key.id.startswith(VAULT.rstrip("/") + "/keys/py-rsa/"), key.id
    assert len(key.properties.version) == 32, key.properties.version
    assert key.properties.enabled is True
    assert key.properties.recovery_level == "Recoverable+Purgeable", key.properties.recovery_level
    assert key.properties.tags == {"purpose": "fidelity"}, key.properties.tags
    assert len(key.key.n) == 256 and key.key.e == b"\x01\x00\x01"
    assert "wrapKey" in key.key_operations and "unwrapKey" in key.key_operations, key.key_operations
    state["rsa"] = key


def create_ec():
    key = KEYS.create_ec_key("py-ec", curve="P-256")
    assert key.key_type == KeyType.ec, key.key_type
    assert len(key.key.x) == 32 and len(key.key.y) == 32
    assert sorted(key.key_operations) == ["sign", "verify"], key.key_operations
    state["ec"] = key


def get_keys():
    for name in ("rsa", "ec"):
        created = state[name]
        latest = KEYS.get_key(created.name)
        assert latest.id == created.id, (latest.id, created.id)
        pinned = KEYS.get_key(created.name, created.properties.version)
        assert pinned.key.kid == created.key.kid
    newer = KEYS.create_rsa_key("py-rsa", size=2048)
    assert newer.properties.version != state["rsa"].properties.version
    assert KEYS.get_key("py-rsa").id == newer.id
    assert KEYS.get_key("py-rsa", state["rsa"].properties.version).id == state["rsa"].id


def missing_key():
    try:
        KEYS.get_key("no-such-key")
    except ResourceNotFoundError as error:
        assert error.status_code == 404 and "KeyNotFound" in str(error), str(error)
        return
    raise AssertionError("getting a missing key succeeded")


def wrap_unwrap_rsa_oaep_256():
    # Local wrap with the public key the fake returned, remote unwrap by the fake.
    crypto = CryptographyClient(state["rsa"], CRED, **CLIENT_OPTIONS)
    dek = os.urandom(32)
    wrapped = crypto.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, dek)
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == dek
    # Wrapped by the cryptography package directly.
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    wrapped = rsa_public(state["rsa"]).encrypt(dek, oaep)
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped).key == dek


def decrypt_rsa_oaep_256_and_rsa1_5():
    # Encrypted by the cryptography package with the public key, decrypted by the fake (what
    # keybroker does with an RSA transit key); a ciphertext under the other padding fails.
    crypto = CryptographyClient(state["rsa"], CRED, **CLIENT_OPTIONS)
    public = rsa_public(state["rsa"])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    secret = b"attack at dawn"
    for algorithm, pad in ((EncryptionAlgorithm.rsa_oaep_256, oaep), (EncryptionAlgorithm.rsa1_5, padding.PKCS1v15())):
        assert crypto.decrypt(algorithm, public.encrypt(secret, pad)).plaintext == secret
    try:
        crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, public.encrypt(secret, padding.PKCS1v15()))
    except HttpResponseError as error:
        assert error.status_code == 400, error.status_code
    else:
        raise AssertionError("an RSA1_5 ciphertext decrypted as RSA-OAEP-256")
    # A key whose key_ops do not allow decrypt is refused.
    signer = KEYS.create_rsa_key("py-rsa-sign-only", size=2048, key_operations=["sign", "verify"])
    signer_crypto = CryptographyClient(signer, CRED, **CLIENT_OPTIONS)
    try:
        signer_crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, rsa_public(signer).encrypt(secret, oaep))
    except HttpResponseError as error:
        assert error.status_code == 403, error.status_code
    else:
        raise AssertionError("decrypt allowed on a key whose key_ops lack decrypt")


def remote_rsa_operations():
    # Get Key is refused on this key, so every operation goes to the fake (wrapkey, verify).
    name = ENV["AZURE_FAKE_REMOTE_RSA"]
    crypto = CryptographyClient(f"{VAULT.rstrip('/')}/keys/{name}", CRED, **CLIENT_OPTIONS)
    dek = os.urandom(32)
    for algorithm in (KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa_oaep, KeyWrapAlgorithm.rsa1_5):
        wrapped = crypto.wrap_key(algorithm, dek)
        # The SDK reports its own (versionless) key id here, not the response's kid.
        assert wrapped.key_id.startswith(f"{VAULT.rstrip('/')}/keys/{name}"), wrapped.key_id
        assert len(wrapped.encrypted_key) == 256
        assert crypto.unwrap_key(algorithm, wrapped.encrypted_key).key == dek
    signed = crypto.sign(SignatureAlgorithm.ps256, DIGEST)
    assert crypto.verify(SignatureAlgorithm.ps256, DIGEST, signed.signature).is_valid
    assert not crypto.verify(SignatureAlgorithm.ps256, hashlib.sha256(b"x").digest(), signed.signature).is_valid
    signed = crypto.sign(SignatureAlgorithm.rs256, DIGEST)
    assert crypto.verify(SignatureAlgorithm.rs256, DIGEST, signed.signature).is_valid


def remote_ec_operations():
    name = ENV["AZURE_FAKE_REMOTE_EC"]
    crypto = CryptographyClient(f"{VAULT.rstrip('/')}/keys/{name}", CRED, **CLIENT_OPTIONS)
    signed = crypto.sign(SignatureAlgorithm.es256, DIGEST)
    assert len(signed.signature) == 64
    assert crypto.verify(SignatureAlgorithm.es256, DIGEST, signed.signature).is_valid
    assert not crypto.verify(SignatureAlgorithm.es256, hashlib.sha256(b"x").digest(), signed.signature).is_valid


def sign_ps256_checked_by_cryptography():
    crypto = CryptographyClient(state["rsa"], CRED, **CLIENT_OPTIONS)
    signed = crypto.sign(SignatureAlgorithm.ps256, DIGEST)
    assert signed.key_id == state["rsa"].id
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    rsa_public(state["rsa"]).verify(signed.signature, DIGEST, pss, utils.Prehashed(hashes.SHA256()))
    assert crypto.verify(SignatureAlgorithm.ps256, DIGEST, signed.signature).is_valid


def sign_es256_checked_by_cryptography():
    crypto = CryptographyClient(state["ec"], CRED, **CLIENT_OPTIONS)
    signed = crypto.sign(SignatureAlgorithm.es256, DIGEST)
    assert len(signed.signature) == 64, len(signed.signature)  # raw r||s, as Key Vault returns
    r = int.from_bytes(signed.signature[:32], "big")
    s = int.from_bytes(signed.signature[32:], "big")
    der = utils.encode_dss_signature(r, s)
    ec_public(state["ec"]).verify(der, DIGEST, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert crypto.verify(SignatureAlgorithm.es256, DIGEST, signed.signature).is_valid


def disabled_key_refused():
    key = KEYS.create_rsa_key("py-disabled", size=2048)
    wrapped = CryptographyClient(key, CRED, **CLIENT_OPTIONS).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, b"k" * 32)
    updated = KEYS.update_key_properties("py-disabled", key.properties.version, enabled=False)
    assert updated.properties.enabled is False
    assert KEYS.get_key("py-disabled").properties.enabled is False
    crypto = CryptographyClient(key.id, CRED, **CLIENT_OPTIONS)
    for operation in (
        lambda: crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key),
        lambda: crypto.sign(SignatureAlgorithm.ps256, DIGEST),
    ):
        try:
            operation()
        except HttpResponseError as error:
            assert error.status_code == 403, error.status_code
            assert "disabled" in str(error), str(error)
            continue
        raise AssertionError("an operation on a disabled key succeeded")
    KEYS.update_key_properties("py-disabled", enabled=True)
    crypto = CryptographyClient(key.id, CRED, **CLIENT_OPTIONS)
    assert crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped.encrypted_key).key == b"k" * 32


def list_keys_paged():
    # One key per page: the SDK follows nextLink through every page.
    names = [item.name for item in KEYS.list_properties_of_keys(max_page_size=1)]
    assert "py-rsa" in names and "py-ec" in names, names
    assert len(names) == len(set(names)), names
    item = next(item for item in KEYS.list_properties_of_keys() if item.name == "py-rsa")
    assert item.id == VAULT.rstrip("/") + "/keys/py-rsa", item.id  # list items carry no version
    assert item.enabled is True


def delete_key_soft():
    KEYS.create_rsa_key("py-deleted", size=2048, tags={"purpose": "deletion"})
    deleted = KEYS.begin_delete_key("py-deleted").result()
    assert deleted.name == "py-deleted", deleted.name
    assert deleted.recovery_id == VAULT.rstrip("/") + "/deletedkeys/py-deleted", deleted.recovery_id
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert deleted.properties.tags == {"purpose": "deletion"}, deleted.properties.tags
    assert KEYS.get_deleted_key("py-deleted").name == "py-deleted"
    try:
        KEYS.get_key("py-deleted")
        raise AssertionError("a deleted key is still served")
    except ResourceNotFoundError:
        pass
    try:
        KEYS.create_rsa_key("py-deleted", size=2048)
        raise AssertionError("the name of a deleted key was reused")
    except HttpResponseError as error:
        assert error.status_code == 409, error.status_code
        assert "deleted but recoverable" in str(error), str(error)


def wrong_secret_refused():
    keys = KeyClient(VAULT, credential("not-the-secret"), **CLIENT_OPTIONS)
    try:
        keys.get_key("py-rsa")
    except ClientAuthenticationError as error:
        assert "AADSTS7000215" in str(error) or "invalid_client" in str(error), str(error)
        return
    raise AssertionError("a wrong client secret was accepted")


check("create RSA key (after 429 + Retry-After)", create_rsa_after_throttling)
check("create EC P-256 key", create_ec)
if "rsa" in state and "ec" in state:
    check("get keys (current and pinned versions, new version)", get_keys)
    check("wrap/unwrap RSA-OAEP-256", wrap_unwrap_rsa_oaep_256)
    check("decrypt RSA-OAEP-256 and RSA1_5", decrypt_rsa_oaep_256_and_rsa1_5)
    check("sign PS256, checked by cryptography", sign_ps256_checked_by_cryptography)
    check("sign ES256, checked by cryptography", sign_es256_checked_by_cryptography)
check("missing key is 404 KeyNotFound", missing_key)
check("remote RSA wrap/unwrap/sign/verify", remote_rsa_operations)
check("remote EC sign/verify", remote_ec_operations)
check("disabled key refused, enabled again", disabled_key_refused)
check("list keys, one per page", list_keys_paged)
check("delete key (soft delete), name not reusable", delete_key_soft)
check("wrong client secret is ClientAuthenticationError", wrong_secret_refused)

if failures:
    print(f"{len(failures)} check(s) failed: {', '.join(failures)}")
    sys.exit(1)
print("all checks passed")
