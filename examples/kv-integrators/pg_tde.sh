#!/usr/bin/env bash
# Percona pg_tde's Vault v2 keyring, call for call, with curl: what pg_tde
# (src/keyring/keyring_vault.c, on libcurl) sends when a Vault key provider is added
# (`validate`), when `pg_tde_create_key_using_global_key_provider` creates a principal key
# and when the server loads it, with its headers (X-Vault-Token, X-Vault-Namespace verbatim
# if configured, and Content-Type: application/json on every request, GETs too), and the
# checks pg_tde makes on each answer.
#
#   VAULT_ADDR=http://127.0.0.1:8200 TOKEN_FILE=token.txt examples/kv-integrators/pg_tde.sh
#
# Optional, as pg_tde_add_global_key_provider_vault_v2's arguments: MOUNT (`mount_path`:
# tde), NAMESPACE (`namespace`, sent as given, e.g. `acme/`: none); KEY_NAME (the principal
# key: global-master-key). Needs bash, curl, base64 and python3 (for JSON).
# examples/kv-integrators/run and tests/e2e/kv_integrators.rs run it.
set -euo pipefail

: "${VAULT_ADDR:?set VAULT_ADDR to the broker (http://…)}"
: "${TOKEN_FILE:?set TOKEN_FILE to a file holding the token (secret_token_path)}"
MOUNT=${MOUNT:-tde}
NAMESPACE=${NAMESPACE:-}
KEY_NAME=${KEY_NAME:-global-master-key}

WORK=$(mktemp -d -t pg_tde-replay.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf 'pg_tde: %s\n' "$*"; }
die() { printf 'pg_tde: ERROR: %s\n' "$*" >&2; exit 1; }
printf 'X-Vault-Token: %s\n' "$(tr -d '\n' <"$TOKEN_FILE")" >"$WORK/token"

# curl_perform URL-PATH [POSTDATA]: GET, or POST with the body; sets STATUS and BODY.
curl_perform() {
    local args=(-s --http1.1 -o "$WORK/body" -w '%{http_code}' -H 'User-Agent:' -H "@$WORK/token")
    [[ -z $NAMESPACE ]] || args+=(-H "X-Vault-Namespace: $NAMESPACE")
    args+=(-H 'Content-Type: application/json')
    [[ $# -lt 2 ]] || args+=(--data-binary "$2")
    STATUS=$(curl "${args[@]}" "$VAULT_ADDR/v1/$1")
    BODY=$(cat "$WORK/body")
    printf 'pg_tde: %-4s /v1/%s -> %s\n' "$([[ $# -lt 2 ]] && echo GET || echo POST)" "$1" "$STATUS"
}

# The field of the top-level `data` object (pg_tde ignores the top-level copies).
data_field() {
    python3 -c '
import json, sys
value = json.load(sys.stdin).get("data") or {}
for name in sys.argv[1:]:
    value = value.get(name) if isinstance(value, dict) else None
print("" if value is None else value)' "$@"
}

# --- the provider is added: validate() ---------------------------------------------------
say "validate the provider (mount $MOUNT${NAMESPACE:+, namespace $NAMESPACE})"
curl_perform "sys/mounts/$MOUNT"
if [[ $STATUS != 200 ]]; then
    say "WARNING: failed to get mount info at mountpoint \"$MOUNT\" (HTTP $STATUS)"
else
    type=$(data_field type <<<"$BODY")
    version=$(data_field options version <<<"$BODY")
    [[ $type == kv ]] || die "vault mount at \"$MOUNT\" has unsupported engine type \"$type\""
    [[ $version == 2 ]] || die "vault mount at \"$MOUNT\" has unsupported Key/Value engine version \"$version\""
    say "mount $MOUNT: type $type, version $version"
fi
curl_perform "$MOUNT/metadata/?list=true"
[[ $STATUS == 200 || $STATUS == 404 ]] || die "Listing secrets at mountpoint \"$MOUNT\" failed"

# --- pg_tde_create_key_using_global_key_provider: absent (404), then a POST (any 2xx) -----
KEY=$(head -c 32 /dev/urandom | base64)
create() {
    curl_perform "$MOUNT/data/$KEY_NAME"
    [[ $STATUS == 404 ]] || {
        [[ $STATUS == 2?? ]] && return 1
        die "could not successfully query key provider (HTTP $STATUS)"
    }
    curl_perform "$MOUNT/data/$KEY_NAME" "{\"data\":{\"key\":\"$KEY\"}}"
    [[ $STATUS == 2?? ]] || die "Invalid HTTP response from keyring provider: $STATUS"
}
say "create principal key $KEY_NAME"
create || die "cannot create key \"$KEY_NAME\" because it already exists"
say "create principal key $KEY_NAME, again"
if create; then die "a second create of $KEY_NAME was not refused"; fi
say "refused: cannot create key \"$KEY_NAME\" because it already exists"

# --- the server loads the key: data.data.key -----------------------------------------------
curl_perform "$MOUNT/data/$KEY_NAME"
[[ $STATUS == 2?? ]] || die "HTTP(S) request to keyring provider returned invalid response $STATUS"
got=$(data_field data key <<<"$BODY")
[[ $got == "$KEY" ]] || die "loaded key $got, stored $KEY"
say "loaded $KEY_NAME: $(base64 -d <<<"$got" | wc -c) bytes, as stored"

# --- the provider is changed: validate() again, now with keys ------------------------------
curl_perform "$MOUNT/metadata/?list=true"
[[ $STATUS == 200 ]] || die "Listing secrets at mountpoint \"$MOUNT\" failed"
say "ok"
