#!/usr/bin/env bash
# MinIO KES's Vault keystore, call for call, with curl: what KES (internal/keystore/vault/
# vault.go and client.go, on Vault's Go SDK) sends when it starts, when `kes key create`,
# `kes key ls`, `kes key rm` run and when it decrypts with a key, with the SDK's headers
# (X-Vault-Request, the token, X-Vault-Namespace if configured, and no Content-Type on a
# body), and the checks KES makes on each answer.
#
#   VAULT_ADDR=http://127.0.0.1:8200 ROLE_ID=… SECRET_ID=… examples/kv-integrators/kes.sh
#
# Optional, as KES's `keystore.vault` settings: KV_VERSION (`version`: v1, KES's default,
# or v2), ENGINE (`engine`: kv), PREFIX (`prefix`: none), NAMESPACE (`namespace`: none);
# KEY (the key's name: my-key). Needs bash, curl, base64 and python3 (for JSON).
# examples/kv-integrators/run and tests/e2e/kv_integrators.rs run it.
set -euo pipefail

: "${VAULT_ADDR:?set VAULT_ADDR to the broker (http://…)}"
: "${ROLE_ID:?set ROLE_ID to the AppRole role_id (keystore.vault.approle.id)}"
: "${SECRET_ID:?set SECRET_ID to the AppRole secret_id (keystore.vault.approle.secret)}"
KV_VERSION=${KV_VERSION:-v1}
ENGINE=${ENGINE:-kv}
PREFIX=${PREFIX:-}
NAMESPACE=${NAMESPACE:-}
KEY=${KEY:-my-key}
[[ $KV_VERSION == v1 || $KV_VERSION == v2 ]] || { echo "KV_VERSION is v1 or v2" >&2; exit 2; }

WORK=$(mktemp -d -t kes-replay.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf 'kes: %s\n' "$*"; }
die() { printf 'kes: %s\n' "$*" >&2; exit 1; }

# One field of the JSON document on stdin, or "" if it is missing or null.
field() {
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for name in sys.argv[1:]:
    value = value.get(name) if isinstance(value, dict) else None
print("" if value is None else (json.dumps(value) if not isinstance(value, str) else value))' "$@"
}

# Go's path.Join: no empty segments, no trailing slash.
join() { local IFS=/; local out; out="$*"; out=$(tr -s / <<<"$out"); out=${out#/}; printf '%s' "${out%/}"; }

# vault METHOD PATH [BODY]: one request as Vault's Go SDK sends it. Sets STATUS and BODY.
# The token goes to curl in a file, never on its command line. NO_NAMESPACE=1 is the SDK
# client cloned with ClearNamespace (sys/health).
vault() {
    local args=(-s --http1.1 --compressed -X "$1" -o "$WORK/body" -w '%{http_code}'
        -H 'User-Agent: Go-http-client/1.1' -H 'Accept:' -H 'Accept-Encoding: gzip'
        -H 'X-Vault-Request: true')
    [[ ! -s $WORK/token ]] || args+=(-H "@$WORK/token")
    [[ -z $NAMESPACE || -n ${NO_NAMESPACE:-} ]] || args+=(-H "X-Vault-Namespace: $NAMESPACE")
    [[ $# -lt 3 ]] || args+=(-H 'Content-Type:' --data-binary "$3")
    STATUS=$(curl "${args[@]}" "$VAULT_ADDR/v1/$2")
    BODY=$(cat "$WORK/body")
    printf 'kes: %-6s /v1/%s -> %s\n' "$1" "$2" "$STATUS"
}

if [[ $KV_VERSION == v2 ]]; then
    DATA=$(join "$ENGINE" data "$PREFIX" "$KEY")
    READ="$DATA?version=1"                       # KVv2.GetVersion(…, 1)
    DELETE=$(join "$ENGINE" metadata "$PREFIX" "$KEY")   # KVv2.DeleteMetadata
    LIST=$(join "$ENGINE" metadata "$PREFIX")
else
    DATA=$(join "$ENGINE" "$PREFIX" "$KEY")
    READ=$DATA
    DELETE=$DATA
    LIST=$(join "$ENGINE" "$PREFIX")
fi
VALUE="{\"bytes\":\"$(head -c 32 /dev/urandom | base64)\",\"algorithm\":\"AES256\"}"
# KES writes the key under its own name, the value a JSON string; v2 create-only (cas 0).
ENTRY=$(python3 -c 'import json, sys; print(json.dumps({sys.argv[1]: sys.argv[2]}))' "$KEY" "$VALUE")
if [[ $KV_VERSION == v2 ]]; then WRITE="{\"data\":$ENTRY,\"options\":{\"cas\":0}}"; else WRITE=$ENTRY; fi

# --- start: AppRole login (auth/approle/login, a PUT), then the health poll -------------
say "login with AppRole${NAMESPACE:+ in namespace $NAMESPACE}"
vault PUT auth/approle/login "{\"role_id\":\"$ROLE_ID\",\"secret_id\":\"$SECRET_ID\"}"
((STATUS < 400)) || die "vault: authentication failed: $BODY"
TOKEN=$(field auth client_token <<<"$BODY")
[[ -n $TOKEN ]] || die "vault: authentication failed: SDK returned no error but also no token"
printf 'X-Vault-Token: %s\n' "$TOKEN" >"$WORK/token"
say "token ttl $(field auth lease_duration <<<"$BODY") s, renewable $(field auth renewable <<<"$BODY")"
NO_NAMESPACE=1 vault GET "sys/health?drsecondarycode=299&haunhealthycode=299&performancestandbycode=299&removedcode=299&sealedcode=299&standbycode=299&uninitcode=299"
[[ $STATUS == 2?? ]] || die "health: HTTP $STATUS $BODY"
[[ $(field initialized <<<"$BODY") == true ]] || die "vault: not initialized"
[[ $(field sealed <<<"$BODY") == false ]] || die "vault: key store is sealed"

# --- kes key create: a read (404: absent), then the write (200 or 204) ------------------
create() {
    vault GET "$DATA"
    case $STATUS in
        404) ;;
        2??) local existing
             if [[ $KV_VERSION == v2 ]]; then existing=$(field data data "$KEY" <<<"$BODY")
             else existing=$(field data "$KEY" <<<"$BODY"); fi
             [[ -z $existing ]] || return 1  # kesdk.ErrKeyExists
             die "vault: entry exists but has no key: $BODY" ;;
        *) die "vault: failed to create '$DATA': HTTP $STATUS $BODY" ;;
    esac
    vault PUT "$DATA" "$WRITE"
    [[ $STATUS == 200 || $STATUS == 204 ]] || die "vault: failed to create '$DATA': HTTP $STATUS $BODY"
}
say "kes key create $KEY"
create || die "key $KEY already exists"
say "kes key create $KEY, again"
if create; then die "a second create of $KEY was not refused"; fi
say "refused: key already exists (from the read; nothing written)"

# --- decrypt with the key: a read; v2 with ?version=1 ------------------------------------
say "read $KEY"
vault GET "$READ"
[[ $STATUS == 200 ]] || die "vault: failed to read '$READ': HTTP $STATUS $BODY"
if [[ $KV_VERSION == v2 ]]; then
    # The Go SDK's KVv2 checks: data.metadata with custom_metadata (null is fine).
    python3 -c 'import json, sys; m = json.load(sys.stdin)["data"]["metadata"]; assert "custom_metadata" in m and m["version"] == 1, m' <<<"$BODY" \
        || die "secret is missing expected fields: $BODY"
    got=$(field data data "$KEY" <<<"$BODY")
else
    got=$(field data "$KEY" <<<"$BODY")
fi
[[ $got == "$VALUE" ]] || die "read back $got, wrote $VALUE"
say "the key's value, byte for byte"

# --- kes key ls: GET ?list=true (newest), LIST (older) ------------------------------------
for method in GET LIST; do
    vault "$method" "$LIST?list=true"
    [[ $STATUS == 200 ]] || die "vault: failed to list '$LIST': HTTP $STATUS $BODY"
    say "keys: $(field data keys <<<"$BODY")"
done

# --- token renewal at 80 % of the TTL: renew-self with increment 0 -------------------------
vault PUT auth/token/renew-self '{"increment":0}'
[[ $STATUS == 200 && $(field auth client_token <<<"$BODY") == "$TOKEN" ]] \
    || die "renew-self: HTTP $STATUS $BODY"
say "renewed: ttl $(field auth lease_duration <<<"$BODY") s"

# --- kes key rm: DELETE (older KES insisted on exactly 204) --------------------------------
vault DELETE "$DELETE"
[[ $STATUS == 204 ]] || die "vault: failed to delete '$DELETE': HTTP $STATUS $BODY"
vault GET "$READ"
[[ $STATUS == 404 ]] || die "deleted key still reads: HTTP $STATUS $BODY"
say "key $KEY deleted"
say "ok"
