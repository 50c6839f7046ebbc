//! The authority matrix (issue 16): every route the broker serves — enumerated from the
//! server's registry of mount kinds (`keybroker_server::http::kind::Registry`), whose route
//! lists the dispatcher enforces — with each verb, called by every kind of caller, in the root namespace and in
//! a tenant, against the real binary. The expected answer of each cell is written down
//! below: each route has a class ([`EXPECTED`]), and each class says what every caller gets
//! where ([`expected`]). A route without a class fails the test.

use keybroker_server::http::{
    kind::Registry,
    routes::{Access, Base, Route},
    Operation,
};
use serde_json::{json, Value};

use crate::support::{ns, Broker};

/// Who may reach a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Anyone, with or without a token (health; an auth method's login).
    Public,
    /// Any token in its own namespace, through the built-in `default` policy.
    SelfService,
    /// Whoever's policies grant it in the namespace (in a tenant: its admin, a root-namespace
    /// token delegated to it, root).
    Policy,
    /// As `Policy`; a transit route, which the root-namespace `transit/*` token holds.
    Transit,
    /// The operator's: only in the root namespace, where only policies (here: root) grant
    /// it; inside a tenant it does not exist.
    Global,
    /// As `Policy`, except for a token whose `default` policy's exact rule on the path
    /// outranks its own glob (Vault's precedence: an exact path beats `*`), so a tenant's
    /// admin holding `*` has only what `default` grants there.
    DefaultExact,
    /// Anyone, with or without a token; a token must be valid where it is presented (the
    /// handler then shows what its policies reach).
    Discovery,
    /// Anyone without a token; a token as `SelfService` (`sys/wrapping/lookup`, which Vault
    /// answers unauthenticated, the wrapping token in the body).
    AnonymousOrSelf,
    /// A PATCH: as `Policy`, for the `patch` capability, which none of the callers here
    /// holds but root (Vault's `update` does not grant it).
    PatchCapability,
}

use Class::{
    AnonymousOrSelf, DefaultExact, Discovery, Global, PatchCapability, Policy, Public, SelfService,
    Transit,
};

/// Each route's class, by `<kind>:<pattern>` (`:<pattern>` at the API's root) and verb
/// (`*` for every verb it serves).
const EXPECTED: &[(&str, &str, Class)] = &[
    (":sys/health", "*", Public),
    (":sys/seal-status", "*", Public),
    (":sys/leader", "*", Public),
    (":sys/mounts", "*", Policy),
    (":sys/init", "*", Public),
    // The API's description (Vault: unauthenticated); the software's, no state in it.
    (":sys/internal/specs/openapi", "*", Public),
    (":sys/mounts/*path", "*", Policy),
    // Tuning takes the authority mounting takes (an auth method's: `sudo`).
    (":sys/mounts/*path/tune", "*", Policy),
    (":sys/auth", "*", Policy),
    (":sys/auth/*path", "*", Policy),
    (":sys/auth/*path/tune", "*", Policy),
    // Any caller, each seeing the mounts its policies reach in its namespace.
    (":sys/internal/ui/mounts", "*", Discovery),
    (":sys/internal/ui/mounts/*path", "*", Discovery),
    (":sys/policies/acl", "*", Policy),
    (":sys/policies/acl/:name", "*", Policy),
    (":sys/policy", "*", Policy),
    (":sys/policy/:name", "*", Policy),
    // Response wrapping: `default` grants wrap, lookup and unwrap (as Vault's); lookup also
    // answers without a token, and a wrapping token on its own paths (wrapping.rs).
    (":sys/wrapping/wrap", "*", SelfService),
    (":sys/wrapping/unwrap", "*", SelfService),
    (":sys/wrapping/lookup", "*", AnonymousOrSelf),
    (":sys/wrapping/rewrap", "*", Policy),
    (":sys/capabilities", "*", Policy),
    (":sys/capabilities-self", "*", SelfService),
    (":sys/capabilities-accessor", "*", Policy),
    (":sys/namespaces", "*", Global),
    (":sys/namespaces/:name", "*", Global),
    // A tenant sees the instances and agents that concern it (authority.rs checks what).
    (":sys/plugins/backends", "*", Policy),
    (":sys/agents", "*", Policy),
    (":sys/plugins/reload", "*", Global),
    (":sys/metrics", "*", Global),
    (":sys/audit-hash/:name", "*", Global),
    (":auth/token/create", "*", Policy),
    (":auth/token/create-orphan", "*", Policy),
    (":auth/token/lookup-self", "R", SelfService),
    // `default` grants `read` on lookup-self; a POST needs `update`.
    (":auth/token/lookup-self", "W", DefaultExact),
    (":auth/token/renew-self", "*", SelfService),
    (":auth/token/revoke-self", "*", SelfService),
    (":auth/token/lookup-accessor", "*", Policy),
    (":auth/token/revoke-accessor", "*", Policy),
    (":auth/token/tidy", "*", Policy),
    // The token in the body, or by accessor (GET lookup: the caller's own, as in Vault).
    (":auth/token/lookup", "*", Policy),
    (":auth/token/renew", "*", Policy),
    (":auth/token/renew-accessor", "*", Policy),
    (":auth/token/revoke", "*", Policy),
    // Also root or sudo, which the handler checks (Vault's 400); a caller without a policy
    // on the path is denied before.
    (":auth/token/revoke-orphan", "*", Policy),
    // A sudo path: every caller granted it here holds sudo.
    (":auth/token/accessors", "*", Policy),
    (":auth/token/roles", "*", Policy),
    (":auth/token/roles/:role_name", "*", Policy),
    (":auth/token/create/:role_name", "*", Policy),
    ("approle:login", "*", Public),
    ("approle:role", "*", Policy),
    ("approle:role/:name", "*", Policy),
    ("approle:role/:name/role-id", "*", Policy),
    ("approle:role/:name/secret-id", "*", Policy),
    ("approle:role/:name/custom-secret-id", "*", Policy),
    ("approle:role/:name/secret-id/lookup", "*", Policy),
    ("approle:role/:name/secret-id/destroy", "*", Policy),
    ("approle:role/:name/secret-id-accessor/lookup", "*", Policy),
    ("approle:role/:name/secret-id-accessor/destroy", "*", Policy),
    ("approle:tidy/secret-id", "*", Policy),
    ("jwt:login", "*", Public),
    // A person's OIDC login: the provider's URL, then the provider's answer.
    ("jwt:oidc/auth_url", "*", Public),
    ("jwt:oidc/callback", "*", Public),
    ("jwt:config", "*", Policy),
    ("jwt:role", "*", Policy),
    ("jwt:role/:name", "*", Policy),
    ("transit:keys", "*", Transit),
    ("transit:keys/:name", "*", Transit),
    ("transit:keys/:name/config", "*", Transit),
    ("transit:keys/:name/rotate", "*", Transit),
    ("transit:keys/:name/trim", "*", Transit),
    // A backup holds key material in plaintext: an ordinary ACL path all the same, as in
    // Vault (`read` on `transit/backup/<name>`).
    ("transit:backup/:name", "*", Transit),
    ("transit:restore", "*", Transit),
    ("transit:restore/:name", "*", Transit),
    ("transit:encrypt/:name", "*", Transit),
    ("transit:decrypt/:name", "*", Transit),
    ("transit:rewrap/:name", "*", Transit),
    ("transit:datakey/:kind/:name", "*", Transit),
    ("transit:sign/:name", "*", Transit),
    ("transit:sign/:name/:algorithm", "*", Transit),
    ("transit:verify/:name", "*", Transit),
    ("transit:verify/:name/:algorithm", "*", Transit),
    ("transit:hmac/:name", "*", Transit),
    ("transit:hmac/:name/:algorithm", "*", Transit),
    ("transit:random", "*", Transit),
    ("transit:random/:a", "*", Transit),
    ("transit:random/:a/:b", "*", Transit),
    ("transit:hash", "*", Transit),
    ("transit:hash/:algorithm", "*", Transit),
    ("transit:config/keys", "*", Transit),
    ("transit:cache-config", "*", Transit),
    ("transit:export/:type/:name", "*", Transit),
    ("transit:export/:type/:name/:version", "*", Transit),
    ("transit:wrapping_key", "*", Transit),
    ("transit:keys/:name/import", "*", Transit),
    ("transit:keys/:name/import_version", "*", Transit),
    // KV, versions 2 (at `secret/`) and 1 (at `kv1/`: the mount's root and any path).
    // `rotate` and `key` also need `sudo`, which every caller granted `secret/*` here holds.
    ("kv:config", "*", Policy),
    ("kv:rotate", "*", Policy),
    ("kv:key", "*", Policy),
    ("kv:data/*path", "P", PatchCapability),
    ("kv:data/*path", "*", Policy),
    ("kv:metadata", "*", Policy),
    ("kv:metadata/*path", "P", PatchCapability),
    ("kv:metadata/*path", "*", Policy),
    ("kv:delete/*path", "*", Policy),
    ("kv:undelete/*path", "*", Policy),
    ("kv:destroy/*path", "*", Policy),
    ("kv:subkeys/*path", "*", Policy),
    ("kv:", "*", Policy),
    ("kv:*path", "*", Policy),
];

/// The kinds of caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// No token.
    Anonymous,
    /// A token of tenant `acme` with only the `default` policy.
    AcmeDefault,
    /// Tenant `acme`'s own admin: every capability, `sudo` included, on `*`.
    AcmeAdmin,
    /// Tenant `globex`'s own admin, the same policy in its tenant.
    GlobexAdmin,
    /// A root-namespace token with every capability but `sudo` on `transit/*`.
    RootTransit,
    /// A root-namespace token delegated tenant `acme`: every capability on `acme/*`.
    AcmeDelegate,
    /// The root token.
    Root,
}

const CALLERS: [Caller; 7] = [
    Caller::Anonymous,
    Caller::AcmeDefault,
    Caller::AcmeAdmin,
    Caller::GlobexAdmin,
    Caller::RootTransit,
    Caller::AcmeDelegate,
    Caller::Root,
];

/// What a cell answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The handler ran (any answer but the three below, and never a 5xx).
    Reached,
    /// 403 "permission denied".
    Denied,
    /// 404 "unsupported path": not served here.
    Absent,
}

/// The written-down answer of a cell: `class` of route, `caller`, in tenant `acme` or not.
fn expected(class: Class, caller: Caller, in_acme: bool) -> Outcome {
    use Caller::*;
    use Outcome::*;
    let outcome = |reached: bool| if reached { Reached } else { Denied };
    match (class, in_acme) {
        (Public, _) => Reached,
        (AnonymousOrSelf, _) if caller == Anonymous => Reached,
        (AnonymousOrSelf, _) => expected(SelfService, caller, in_acme),
        // A token is valid in its own namespace and below (root-namespace tokens in acme).
        (Discovery, false) => outcome(matches!(
            caller,
            Anonymous | RootTransit | AcmeDelegate | Root
        )),
        (Discovery, true) => outcome(caller != GlobexAdmin),
        (SelfService, false) => outcome(matches!(caller, RootTransit | AcmeDelegate | Root)),
        (SelfService, true) => outcome(matches!(
            caller,
            AcmeDefault | AcmeAdmin | AcmeDelegate | Root
        )),
        (Policy, false) => outcome(caller == Root),
        (Transit, false) => outcome(matches!(caller, RootTransit | Root)),
        (Policy | Transit, true) => outcome(matches!(caller, AcmeAdmin | AcmeDelegate | Root)),
        (DefaultExact, false) => outcome(caller == Root),
        (DefaultExact, true) => outcome(matches!(caller, AcmeDelegate | Root)),
        (PatchCapability, _) => outcome(caller == Root),
        (Global, false) => outcome(caller == Root),
        // Those whose policy lets the request through find nothing there.
        (Global, true) => match caller {
            AcmeAdmin | AcmeDelegate | Root => Absent,
            _ => Denied,
        },
    }
}

/// The class written down for `route` and `operation`.
fn class_of(base: Base, route: &Route, operation: Operation) -> Option<Class> {
    let key = match base {
        Base::Root => format!(":{}", route.pattern),
        Base::Mount(kind) => format!("{kind}:{}", route.pattern),
    };
    let verb = match operation {
        Operation::Read => "R",
        Operation::List => "L",
        Operation::Write => "W",
        Operation::Delete => "D",
        Operation::Patch => "P",
    };
    EXPECTED
        .iter()
        .find(|(k, v, _)| *k == key && (*v == "*" || *v == verb))
        .map(|(_, _, class)| *class)
}

/// A concrete path for `route`: each parameter gets a harmless sample (`matrix`: no such
/// key, role, mount or tenant exists, so nothing the fixture relies on is touched).
fn concrete(base: Base, route: &Route) -> String {
    let below = route
        .pattern
        .split('/')
        .map(|segment| match segment {
            ":kind" => "plaintext",
            ":algorithm" => "sha2-256",
            ":a" => "32",
            ":b" => "hex",
            s if s.starts_with(':') || s.starts_with('*') => "matrix",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/");
    match base {
        Base::Root => below,
        Base::Mount("transit") => format!("transit/{below}"),
        // KV version 1's routes (the mount's root, any path) at a version 1 mount.
        Base::Mount("kv") if matches!(route.pattern, "" | "*path") => format!("kv1/{below}"),
        Base::Mount("kv") => format!("secret/{below}"),
        Base::Mount(kind) => format!("auth/{kind}/{below}"),
    }
}

fn method(operation: Operation) -> &'static str {
    match operation {
        Operation::Read => "GET",
        Operation::List => "LIST",
        Operation::Write => "POST",
        Operation::Delete => "DELETE",
        Operation::Patch => "PATCH",
    }
}

/// Writes `policy` as `name` in `tenant` (`""`: root) and returns a fresh orphan token of
/// that tenant carrying it (and `default`).
fn token_with(broker: &Broker, tenant: &str, name: &str, policy: &str) -> String {
    let headers: Vec<(&str, &str)> = if tenant.is_empty() {
        vec![("X-Vault-Token", &broker.token)]
    } else {
        vec![
            ("X-Vault-Token", &broker.token),
            ("X-Vault-Namespace", tenant),
        ]
    };
    let (status, body) = broker.request_with(
        "POST",
        &format!("sys/policies/acl/{name}"),
        Some(&json!({ "policy": policy })),
        &headers,
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = broker.request_with(
        "POST",
        "auth/token/create",
        Some(&json!({ "policies": [name], "no_parent": true })),
        &headers,
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_owned()
}

const EVERYTHING: &str = "path \"*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sudo\"] }\n";

/// A fresh token for `caller` (none for the anonymous one).
fn mint(broker: &Broker, caller: Caller) -> Option<String> {
    Some(match caller {
        Caller::Anonymous => return None,
        Caller::AcmeDefault => token_with(broker, "acme", "nothing", "path \"matrix-none\" { capabilities = [\"deny\"] }\n"),
        Caller::AcmeAdmin => token_with(broker, "acme", "admin", EVERYTHING),
        Caller::GlobexAdmin => token_with(broker, "globex", "admin", EVERYTHING),
        Caller::RootTransit => token_with(
            broker,
            "",
            "transit-user",
            "path \"transit/*\" { capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\"] }\n",
        ),
        Caller::AcmeDelegate => token_with(
            broker,
            "",
            "acme-delegate",
            &EVERYTHING.replace("path \"*\"", "path \"acme/*\""),
        ),
        Caller::Root => {
            let (status, body) = broker.request(
                "POST",
                "auth/token/create",
                Some(&json!({ "policies": ["root"] })),
            );
            assert_eq!(status, 200, "{body}");
            body["auth"]["client_token"].as_str().unwrap().to_owned()
        }
    })
}

/// The outcome of an answer; a 5xx is reported as a failure of its own.
fn outcome_of(status: u16, body: &Value) -> Result<Outcome, String> {
    let message = body["errors"][0].as_str().unwrap_or_default();
    match (status, message) {
        (403, "permission denied") => Ok(Outcome::Denied),
        (404, "unsupported path") => Ok(Outcome::Absent),
        // Vault's answer for nothing there (an empty list, a missing role): `{"errors":[]}`.
        (404, "") => Ok(Outcome::Reached),
        (403 | 405, _) if message.is_empty() => {
            Err(format!("{status} without an error message: {body}"))
        }
        (405, _) => Err(format!("405 for a listed verb: {body}")),
        (500.., _) => Err(format!("{status}: {body}")),
        _ => Ok(Outcome::Reached),
    }
}

#[test]
fn every_route_answers_every_kind_of_caller_as_written_down() {
    let broker = Broker::dev();
    for tenant in ["acme", "globex"] {
        broker.bao_ok(&["namespace", "create", tenant]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "transit"]);
        broker.bao_ok(&["secrets", "enable", &ns(tenant), "-path=secret", "kv-v2"]);
        broker.bao_ok(&[
            "secrets",
            "enable",
            &ns(tenant),
            "-path=kv1",
            "-version=1",
            "kv",
        ]);
    }
    // `secret/` is KV version 2 in dev mode, as in Vault's.
    broker.bao_ok(&["secrets", "enable", "-path=kv1", "-version=1", "kv"]);
    for kind in ["approle", "jwt"] {
        broker.bao_ok(&["auth", "enable", kind]);
        broker.bao_ok(&["auth", "enable", &ns("acme"), kind]);
    }
    let callers: Vec<(Caller, Option<String>)> =
        CALLERS.iter().map(|c| (*c, mint(&broker, *c))).collect();

    let mut cells = 0;
    let mut wrong = Vec::new();
    for (base, route) in Registry::standard().routes() {
        let path = concrete(base, route);
        for &operation in route.operations {
            let Some(class) = class_of(base, route, operation) else {
                wrong.push(format!(
                    "{} {path}: a route without a written expectation",
                    method(operation)
                ));
                continue;
            };
            assert_eq!(
                class == Public,
                route.access == Access::Anonymous,
                "{path}: the route list and the expectation disagree on anonymous access"
            );
            for in_acme in [false, true] {
                for (caller, token) in &callers {
                    // Revoking itself ends a token: those cells get a token of their own.
                    let own;
                    let token = if path == "auth/token/revoke-self" {
                        own = mint(&broker, *caller);
                        own.as_ref()
                    } else {
                        token.as_ref()
                    };
                    let mut headers = Vec::new();
                    if let Some(token) = token {
                        headers.push(("X-Vault-Token", token.as_str()));
                    }
                    if in_acme {
                        headers.push(("X-Vault-Namespace", "acme"));
                    }
                    let body = (operation == Operation::Write).then(|| json!({}));
                    let (status, answer) =
                        broker.request_with(method(operation), &path, body.as_ref(), &headers);
                    cells += 1;
                    let want = expected(class, *caller, in_acme);
                    let place = if in_acme { "acme" } else { "root" };
                    match outcome_of(status, &answer) {
                        Ok(got) if got == want => {}
                        Ok(got) => wrong.push(format!(
                            "{} {path} in {place} as {caller:?}: {got:?}, expected {want:?} \
                             ({status} {answer})",
                            method(operation)
                        )),
                        Err(failure) => wrong.push(format!(
                            "{} {path} in {place} as {caller:?}: {failure}",
                            method(operation)
                        )),
                    }
                }
            }
        }
    }
    println!("{cells} cells of the authority matrix checked");
    assert!(
        wrong.is_empty(),
        "{} cells answer otherwise than written down:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
