// A real OpenID provider (npm `oidc-provider`) for the keybroker JWT/OIDC auth tests.
//
//   node tests/idp/server.mjs --port P --cert CERT.pem --key KEY.pem --state DIR
//        [--exit-on-stdin-close]
//
// HTTPS on 127.0.0.1:P only; the issuer is exactly `https://127.0.0.1:P` (`--port 0` picks a
// free port). Prints `ready <issuer>` on stdout once it listens. Clients use the
// client-credentials grant with `resource=<audience>` and get RS256 JWT access tokens whose
// `aud` is that resource. See README.md beside this file.
//
// State in DIR: `jwks.json` (private signing keys, made at first start, reused after) and an
// optional `clients.json` read at start.
import { generateKeyPairSync, createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    state: { type: 'string' },
    // Lets the parent's death (closed pipe) end the fixture, so a crashed test run leaves no
    // provider behind.
    'exit-on-stdin-close': { type: 'boolean', default: false },
  },
});
for (const name of ['port', 'cert', 'key', 'state']) {
  if (args[name] === undefined) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
}

const DEFAULT_CLIENTS = [
  {
    client_id: 'app-web',
    client_secret: 'app-web-secret',
    extra_claims: { groups: ['payments', 'readers'], team: 'web' },
  },
  {
    client_id: 'app-batch',
    client_secret: 'app-batch-secret',
    extra_claims: { groups: ['batch'], team: 'data' },
  },
];

// Fields of clients.json entries that this fixture consumes; every other field is
// oidc-provider client metadata.
//   extra_claims:      object merged into each access token (cannot override iss, sub, aud,
//                      exp, iat, jti, client_id, scope: oidc-provider sets those after it)
//   access_token_ttl:  seconds (default 600)
//   access_token_alg:  "RS256" (default) or "ES256"
function loadClients(stateDir) {
  const path = join(stateDir, 'clients.json');
  const entries = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : DEFAULT_CLIENTS;
  if (!Array.isArray(entries)) throw new Error(`${path}: expected a JSON array of clients`);
  const settings = new Map();
  const metadata = entries.map((entry) => {
    const {
      extra_claims: extraClaims, access_token_ttl: ttl, access_token_alg: alg, ...client
    } = entry;
    settings.set(client.client_id, { extraClaims, ttl, alg });
    return {
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      // client_secret_basic is accepted as well: oidc-provider treats the two as one family.
      token_endpoint_auth_method: 'client_secret_post',
      ...client,
    };
  });
  return { metadata, settings };
}

// RFC 7638 thumbprint, so a kid names its key.
function thumbprint(jwk) {
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

// The key pair is made as JWKs by the generating call itself, never exported from a
// KeyObject afterwards: in Node 20, `keyObject.export({ format: 'jwk' })` of a freshly
// generated key holds the key's mutex while it allocates, and a garbage collection at that
// moment finalises the finished generation job, whose destructor takes the same mutex: the
// main thread deadlocks on itself, before `ready`. (Seen in the test suite under load, and
// in about one of a thousand starts of a stress: gdb showed the main thread in
// ~KeyGenJob → uv_mutex_lock, from a collection inside KeyObjectHandle::ExportJWK.)
// Encoded within the call, the job is still alive, so no collection can finalise it.
function newKey(alg) {
  const jwkEncoding = { publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } };
  const { privateKey: jwk } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048, ...jwkEncoding })
    : generateKeyPairSync('ec', { namedCurve: 'P-256', ...jwkEncoding });
  return { ...jwk, kid: thumbprint(jwk), alg, use: 'sig' };
}

const jwksPath = join(args.state, 'jwks.json');

function loadKeys() {
  if (existsSync(jwksPath)) return JSON.parse(readFileSync(jwksPath, 'utf8')).keys;
  const keys = [newKey('RS256'), newKey('ES256')];
  saveKeys(keys);
  return keys;
}

function saveKeys(keys) {
  const temporary = `${jwksPath}.tmp`;
  writeFileSync(temporary, JSON.stringify({ keys }, null, 2), { mode: 0o600 });
  renameSync(temporary, jwksPath);
}

const clients = loadClients(args.state);

// oidc-provider signs with the first key of the JWKS that fits the algorithm, so the key
// order is the rotation order: the newest RS256 key comes first.
function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: clients.metadata,
    jwks: { keys },
    scopes: ['openid', 'api'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Without a resource oidc-provider would issue an opaque token; this fixture only
        // issues JWTs, so the audience is required.
        defaultResource: (ctx, client, oneOf) => {
          if (oneOf) return oneOf;
          throw new errors.InvalidTarget('resource (the token audience) is required');
        },
        // No authorization-code flow here, so there is never a granted resource to reuse.
        useGrantedResource: () => false,
        // Any absolute URI is an audience: tests ask for the ones they need.
        getResourceServerInfo: (ctx, resource, client) => {
          const settings = clients.settings.get(client.clientId) ?? {};
          return {
            scope: 'api',
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: settings.ttl ?? 600,
            jwt: { sign: { alg: settings.alg ?? 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: (ctx, token) => clients.settings.get(token.clientId)?.extraClaims,
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
    },
  });
  provider.on('server_error', (ctx, error) => console.error(`server_error: ${error.stack}`));
  provider.on('grant.error', (ctx, error) => {
    console.error(`grant.error: ${error.message}: ${error.error_description}`);
  });
  return provider.callback();
}

let keys = loadKeys();
let current;

// Test-only key management. No authentication: this is a loopback fixture that exists to
// let tests rotate the signing keys under a running broker.
function admin(req, res) {
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method !== 'POST') return reply(405, { error: 'POST only' });
  let next;
  if (req.url === '/admin/rotate') {
    next = [newKey('RS256'), ...keys];
  } else if (req.url === '/admin/retire') {
    const [newestRsa] = keys.filter((key) => key.kty === 'RSA');
    next = keys.filter((key) => key.kty !== 'RSA' || key === newestRsa);
  } else {
    return reply(404, { error: 'unknown admin route' });
  }
  // oidc-provider takes its keys at construction: swap in a new instance.
  current = buildProvider(issuer, next);
  saveKeys(next);
  keys = next;
  return reply(200, { kids: keys.map((key) => key.kid) });
}

let issuer;
const server = createServer(
  { cert: readFileSync(args.cert), key: readFileSync(args.key) },
  (req, res) => {
    if (req.url.startsWith('/admin/')) return admin(req, res);
    if (!current) {
      res.writeHead(503);
      return res.end();
    }
    return current(req, res);
  },
);
server.listen(Number(args.port), '127.0.0.1', () => {
  issuer = `https://127.0.0.1:${server.address().port}`;
  current = buildProvider(issuer, keys);
  console.log(`ready ${issuer}`);
});

if (args['exit-on-stdin-close']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
