// A real OpenID provider (npm `oidc-provider`) for the keybroker JWT/OIDC auth tests.
//
//   node tests/idp/server.mjs --port P --cert CERT.pem --key KEY.pem --state DIR
//        [--exit-on-stdin-close]
//
// HTTPS on 127.0.0.1:P only; the issuer is exactly `https://127.0.0.1:P` (`--port 0` picks a
// free port). Prints `ready <issuer>` on stdout once it listens. Client-credentials clients
// ask with `resource=<audience>` and get RS256 JWT access tokens whose `aud` is that
// resource. Authorization-code clients (PKCE S256 required) send a person to
// `/interaction/<uid>` (this file's own login and consent pages; accounts from
// `accounts.json`) and get RS256 ID tokens with the account's claims. See README.md beside
// this file.
//
// State in DIR: `jwks.json` (private signing keys, made at first start, reused after) and
// optional `clients.json` and `accounts.json`, read at start.
import { generateKeyPairSync, createHash, randomBytes } from 'node:crypto';
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
// An entry is an authorization-code client when its grant_types include
// "authorization_code", or when it gives no grant_types but a non-empty redirect_uris; such
// clients default to response_types ["code"] and client_secret_basic. Every other entry is a
// client-credentials client, as before.
function isAuthorizationCodeClient(client) {
  if (client.grant_types !== undefined) return client.grant_types.includes('authorization_code');
  return Array.isArray(client.redirect_uris) && client.redirect_uris.length > 0;
}

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
    if (isAuthorizationCodeClient(client)) {
      return {
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        ...client,
      };
    }
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

const DEFAULT_ACCOUNTS = [
  {
    id: 'alice',
    password: 'alice-password',
    email: 'alice@example.com',
    groups: ['admins', 'readers'],
    name: 'Alice',
  },
  {
    id: 'bob',
    password: 'bob-password',
    email: 'bob@example.com',
    groups: ['readers'],
    name: 'Bob',
  },
];

// The people who can log in: DIR/accounts.json (a JSON array of { id, password, email,
// groups, name }) or DEFAULT_ACCOUNTS. The id is the ID token's `sub`.
function loadAccounts(stateDir) {
  const path = join(stateDir, 'accounts.json');
  const entries = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : DEFAULT_ACCOUNTS;
  if (!Array.isArray(entries)) throw new Error(`${path}: expected a JSON array of accounts`);
  return new Map(entries.map((account) => [String(account.id), account]));
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
const accounts = loadAccounts(args.state);
// Signs the session and interaction cookies. One per process, so cookies outlive the
// provider instances that key rotation swaps in (their sessions, in oidc-provider's
// process-wide memory adapter, do too).
const cookieKeys = [randomBytes(32).toString('base64url')];

async function findAccount(ctx, sub) {
  const account = accounts.get(sub);
  if (!account) return undefined;
  return {
    accountId: sub,
    // Filtered by oidc-provider to the claims of the granted scopes (see `claims` below).
    async claims() {
      return {
        sub,
        email: account.email,
        groups: account.groups,
        name: account.name,
      };
    },
  };
}

// oidc-provider signs with the first key of the JWKS that fits the algorithm, so the key
// order is the rotation order: the newest RS256 key comes first.
function buildProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: clients.metadata,
    jwks: { keys },
    scopes: ['openid', 'api', 'email', 'profile', 'groups'],
    // email, groups and name go with `openid` itself, so every ID token carries them (as
    // with an IdP configured to always emit its group claims); the email, profile and
    // groups scopes are accepted too, and name them again.
    claims: {
      openid: ['sub', 'email', 'groups', 'name'],
      email: ['email'],
      profile: ['name'],
      groups: ['groups'],
    },
    // The claims go into the ID token itself, not only into userinfo.
    conformIdTokenClaims: false,
    findAccount,
    cookies: { keys: cookieKeys },
    // Every authorization request must carry an S256 code_challenge (oidc-provider supports
    // no other method). Client credentials never reach the authorization endpoint.
    pkce: { required: () => true },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Without a resource oidc-provider would issue an opaque token; client credentials
        // here only issue JWTs, so for them the audience is required. The
        // authorization-code flow needs none: its access token (opaque) only serves userinfo.
        defaultResource: (ctx, client, oneOf) => {
          if (oneOf) return oneOf;
          if (ctx.oidc.route === 'token' && ctx.oidc.params?.grant_type === 'client_credentials') {
            throw new errors.InvalidTarget('resource (the token audience) is required');
          }
          return undefined;
        },
        // Authorization-code tokens never ask for a resource, so none is reused.
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
      // The authorization-code flow (set explicitly, which also silences oidc-provider's
      // notices about defaults).
      AuthorizationCode: 60,
      AccessToken: 600,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  });
  provider.on('server_error', (ctx, error) => console.error(`server_error: ${error.stack}`));
  provider.on('grant.error', (ctx, error) => {
    console.error(`grant.error: ${error.message}: ${error.error_description}`);
  });
  return { provider, callback: provider.callback() };
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

function htmlEscape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, status, title, body) {
  const html = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${htmlEscape(title)}</title></head>
<body><h1>${htmlEscape(title)}</h1>
${body}
</body></html>
`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
  });
  res.end(html);
}

function loginPage(res, uid, details, message) {
  const client = details.params.client_id;
  page(res, 200, 'Sign in', `<p>to ${htmlEscape(client)}</p>
${message ? `<p class="error">${htmlEscape(message)}</p>\n` : ''}<form method="post" action="/interaction/${htmlEscape(uid)}/login">
<input type="text" name="login" placeholder="login" autofocus>
<input type="password" name="password" placeholder="password">
<button type="submit">Sign in</button>
</form>`);
}

function consentPage(res, uid, details) {
  const scopes = details.prompt.details.missingOIDCScope ?? [];
  page(res, 200, 'Authorize', `<p>${htmlEscape(details.params.client_id)} asks for: ${htmlEscape(scopes.join(' '))}</p>
<form method="post" action="/interaction/${htmlEscape(uid)}/confirm">
<button type="submit">Continue</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 65536) throw new Error('form body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The person's side of the authorization-code flow (oidc-provider sends the browser to
// `/interaction/<uid>` whenever it needs a login or a consent):
//   GET  /interaction/:uid          the login form (fields login, password) or consent form
//   POST /interaction/:uid/login    wrong password: the login form again, 200, "invalid login";
//                                   right: back to the authorization endpoint, logged in
//   POST /interaction/:uid/confirm  grants the requested scopes and claims, back to /auth
async function interaction(req, res) {
  const { provider } = current;
  const { pathname } = new URL(req.url, issuer);
  const match = /^\/interaction\/([^/]+)(?:\/(login|confirm))?$/.exec(pathname);
  if (!match) return page(res, 404, 'Not found', '<p>unknown interaction route</p>');
  const [, uid, action] = match;
  const expected = action ? 'POST' : 'GET';
  if (req.method !== expected) {
    return page(res, 405, 'Method not allowed', `<p>${expected} only</p>`);
  }
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (error) {
    return page(res, 400, 'Interaction not found', `<p>${htmlEscape(error.message)}</p>`);
  }
  if (details.uid !== uid) {
    return page(res, 400, 'Interaction not found', '<p>interaction cookie names another interaction</p>');
  }
  const prompt = details.prompt.name;
  if (!action) {
    if (prompt === 'login') return loginPage(res, uid, details);
    if (prompt === 'consent') return consentPage(res, uid, details);
    return page(res, 501, 'Not implemented', `<p>prompt ${htmlEscape(prompt)}</p>`);
  }
  const form = await readForm(req);
  if (action === 'login') {
    if (prompt !== 'login') {
      return page(res, 400, 'Wrong step', `<p>expected prompt login, not ${htmlEscape(prompt)}</p>`);
    }
    const login = form.get('login') ?? '';
    const account = accounts.get(login);
    if (!account || account.password !== form.get('password')) {
      return loginPage(res, uid, details, 'invalid login');
    }
    return provider.interactionFinished(
      req,
      res,
      { login: { accountId: login } },
      { mergeWithLastSubmission: false },
    );
  }
  if (prompt !== 'consent') {
    return page(res, 400, 'Wrong step', `<p>expected prompt consent, not ${htmlEscape(prompt)}</p>`);
  }
  const { grantId, session, params, prompt: { details: missing } } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return provider.interactionFinished(
    req,
    res,
    { consent: { grantId: await grant.save() } },
    { mergeWithLastSubmission: true },
  );
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
    if (req.url.startsWith('/interaction/')) {
      return interaction(req, res).catch((error) => {
        console.error(`interaction error: ${error.stack}`);
        if (!res.headersSent) page(res, 500, 'Interaction failed', `<p>${htmlEscape(error.message)}</p>`);
        else res.end();
      });
    }
    return current.callback(req, res);
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
