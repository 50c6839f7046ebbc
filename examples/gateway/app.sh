#!/usr/bin/env bash
# The app of the API-gateway example: a service with an OAuth client identity that gets a JWT
# access token from its OpenID provider (client-credentials grant) and sends it, unchanged,
# in `Authorization: Bearer` through the gateway to keybroker's transit API: it encrypts a
# message, decrypts the ciphertext and checks that the round trip gives the message back.
#
#   IDP_URL=https://127.0.0.1:P IDP_CA=ca.pem GATEWAY_URL=http://127.0.0.1:G \
#       examples/gateway/app.sh
#
# Optional: CLIENT_ID / CLIENT_SECRET (app-web / app-web-secret), AUDIENCE (the `resource`,
# https://broker.example/), KEY (app-orders), MESSAGE. Needs bash, curl, base64, python3
# (for JSON). examples/gateway/run and tests/e2e/gateway.rs run it.
set -euo pipefail

: "${IDP_URL:?set IDP_URL to the issuer of the OpenID provider (https://…)}"
: "${IDP_CA:?set IDP_CA to the PEM file of the CA that signed the certificate of the provider}"
: "${GATEWAY_URL:?set GATEWAY_URL to the gateway (http://…)}"
CLIENT_ID=${CLIENT_ID:-app-web}
CLIENT_SECRET=${CLIENT_SECRET:-app-web-secret}
AUDIENCE=${AUDIENCE:-https://broker.example/}
KEY=${KEY:-app-orders}
MESSAGE=${MESSAGE:-order 1042: 3 x espresso, deliver to gate B}

say() { printf '%s: %s\n' "$CLIENT_ID" "$*"; }

# One field of the JSON document on stdin: `field data ciphertext` prints .data.ciphertext.
field() {
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for name in sys.argv[1:]:
    value = value[name]
print(value)' "$@"
}

# curl, the URL last: prints the body of a 2xx answer; otherwise says what came back, fails.
request() {
    local out status body
    out=$(curl -sS -w '\n%{http_code}' "$@") || return 1
    status=${out##*$'\n'}
    body=${out%$'\n'*}
    if [[ $status != 2?? ]]; then
        echo "$CLIENT_ID: HTTP $status from ${*: -1}: $body" >&2
        return 1
    fi
    printf '%s\n' "$body"
}

# The token endpoint comes from discovery, as any OAuth client finds it. Secrets go to curl
# through file descriptors, never on its command line (which `ps` shows to everyone).
discovery=$(request --cacert "$IDP_CA" "$IDP_URL/.well-known/openid-configuration")
token_endpoint=$(field token_endpoint <<<"$discovery")
response=$(request --cacert "$IDP_CA" \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode "client_secret@"<(printf '%s' "$CLIENT_SECRET") \
    --data-urlencode "resource=$AUDIENCE" \
    "$token_endpoint")
token=$(field access_token <<<"$response")
say "JWT access token from $IDP_URL (aud $AUDIENCE, expires in $(field expires_in <<<"$response") s)"

# A call through the gateway: JSON body in, JSON body out, the JWT as the only credential.
api() {
    request -X POST -H 'Content-Type: application/json' \
        -H @<(printf 'Authorization: Bearer %s\n' "$token") \
        --data-binary "$2" "$GATEWAY_URL/api/$1"
}

plaintext=$(printf '%s' "$MESSAGE" | base64 -w0)
encrypted=$(api "transit/encrypt/$KEY" "{\"plaintext\":\"$plaintext\"}")
ciphertext=$(field data ciphertext <<<"$encrypted")
say "POST /api/transit/encrypt/$KEY \"$MESSAGE\" -> $ciphertext"

decrypted=$(api "transit/decrypt/$KEY" "{\"ciphertext\":\"$ciphertext\"}")
roundtrip=$(field data plaintext <<<"$decrypted" | base64 -d)
say "POST /api/transit/decrypt/$KEY -> \"$roundtrip\""

if [[ $roundtrip != "$MESSAGE" ]]; then
    say "round trip FAILED: the decrypted text differs from the message" >&2
    exit 1
fi
say "round trip ok"
