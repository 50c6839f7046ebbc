//! OIDC login for people through the real binary: the real OpenID provider (npm
//! `oidc-provider`, its own login and consent pages) with an authorization-code client, the
//! `bao` CLI's `login -method=oidc` with its local callback listener, and an HTTP client
//! (curl, with a cookie jar) playing the person. Then the refusals: every one the same
//! answer, and no token issued.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{json, Value};

use crate::support::{
    bao_bin, free_port,
    idp::{auth_code_client, Idp},
    ns, raw_at, Broker,
};

/// The broker's OAuth client at the provider.
const CLIENT: &str = "broker-people";
const SECRET: &str = "broker-people-secret";

/// The answer to every refused callback.
pub(crate) const FAILED: &str =
    "Vault login failed. Expired or missing OAuth state, or the provider's answer was refused.";

/// How long the CLI and the provider may take for each step.
const STEP: Duration = Duration::from_secs(60);

/// A provider whose client `broker-people` may send people back to the CLI's listener on
/// `port` and to the test's own redirect URI.
pub(crate) fn provider(port: u16) -> Idp {
    Idp::start_with_clients(&json!([auth_code_client(
        CLIENT,
        SECRET,
        &[
            &format!("http://localhost:{port}/oidc/callback"),
            "https://people.example/callback",
        ],
    )]))
}

/// Enables Vault's `oidc` type at `auth/oidc` in `namespace` (`""`: root), configured for
/// `idp`, with role `people` (policy `people`, groups and e-mail from the ID token).
pub(crate) fn configure(broker: &Broker, namespace: &str, idp: &Idp) {
    let ns_flag = ns(namespace);
    let mut args = vec!["auth", "enable"];
    if !namespace.is_empty() {
        args.push(&ns_flag);
    }
    args.push("oidc");
    broker.bao_ok(&args);
    let ca = idp.ca_pem_text();
    let body = json!({
        "oidc_discovery_url": idp.issuer,
        "oidc_discovery_ca_pem": ca,
        "oidc_client_id": CLIENT,
        "oidc_client_secret": SECRET,
        "default_role": "people",
    });
    let (status, answer) = broker.request_as(
        &broker.token,
        namespace,
        "POST",
        "auth/oidc/config",
        Some(&body),
    );
    assert_eq!(status, 204, "config: {answer}");
    let role = json!({
        "allowed_redirect_uris": ["http://localhost:8250/oidc/callback", "https://people.example/callback"],
        "user_claim": "email",
        "groups_claim": "groups",
        "oidc_scopes": ["email", "groups"],
        "claim_mappings": { "name": "name" },
        "token_policies": ["people"],
        "token_ttl": "1h",
    });
    let (status, answer) = broker.request_as(
        &broker.token,
        namespace,
        "POST",
        "auth/oidc/role/people",
        Some(&role),
    );
    assert_eq!(status, 204, "role: {answer}");
}

/// `auth/oidc/oidc/auth_url` for the test's own redirect URI; the provider's URL.
pub(crate) fn auth_url(broker: &Broker, namespace: &str, client_nonce: &str) -> String {
    let body = json!({
        "role": "people",
        "redirect_uri": "https://people.example/callback",
        "client_nonce": client_nonce,
    });
    let (status, answer) = broker.request_as(
        "",
        namespace,
        "POST",
        "auth/oidc/oidc/auth_url",
        Some(&body),
    );
    assert_eq!(status, 200, "auth_url: {answer}");
    let url = answer["data"]["auth_url"].as_str().unwrap().to_owned();
    assert!(!url.is_empty(), "{answer}");
    url
}

/// The query parameters of a URL.
fn query(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .query_pairs()
        .into_owned()
        .collect()
}

fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The broker's callback with these parameters, anonymous; (status, body).
pub(crate) fn callback(
    broker: &Broker,
    namespace: &str,
    state: &str,
    code: &str,
    client_nonce: &str,
) -> (u16, String) {
    let path = format!(
        "auth/oidc/oidc/callback?state={}&code={}&client_nonce={}",
        percent_encode(state),
        percent_encode(code),
        percent_encode(client_nonce)
    );
    let mut headers = Vec::new();
    if !namespace.is_empty() {
        headers.push(("X-Vault-Namespace", namespace));
    }
    raw_at(&broker.addr, "GET", &path, None, &headers)
}

/// A person logs in at the provider; the code and state it sends them back with.
pub(crate) fn person(idp: &Idp, url: &str, login: &str, password: &str) -> (String, String) {
    let done = idp.person_login(url, login, password);
    let params = query(&done.redirect);
    assert!(
        done.redirect
            .starts_with("https://people.example/callback?"),
        "the provider did not send {login} back: {} {:?}",
        done.redirect,
        done.pages
    );
    (params["code"].clone(), params["state"].clone())
}

/// `bao login -method=oidc` run as a person would, the test playing the browser: the CLI
/// prints the provider's URL and waits on its local listener; the person logs in; the
/// provider's redirect is delivered to the listener; the CLI prints the token.
fn bao_oidc_login(broker: &Broker, namespace: &str, idp: &Idp, port: u16) -> Value {
    let mut command = Command::new(bao_bin());
    command
        .args(["login", "-method=oidc", "-path=oidc", "-format=json"])
        .env("BAO_ADDR", &broker.addr)
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        // The CLI keeps the token it got in ~/.vault-token otherwise.
        .arg("-no-store");
    if !namespace.is_empty() {
        command.arg(ns(namespace));
    }
    command
        .args([
            "role=people".to_owned(),
            format!("port={port}"),
            "listenaddress=127.0.0.1".to_owned(),
            "skip_browser=true".to_owned(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start bao login -method=oidc");
    let stderr = child.stderr.take().unwrap();
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // The CLI prints the URL, then waits: its listener is up before it prints.
    let mut printed = Vec::new();
    let url = loop {
        let line = seen
            .recv_timeout(STEP)
            .unwrap_or_else(|_| panic!("bao printed no authorization URL: {printed:?}"));
        let trimmed = line.trim().to_owned();
        printed.push(line);
        if trimmed.starts_with("https://") {
            break trimmed;
        }
    };
    let done = idp.person_login(&url, "alice", "alice-password");
    assert!(
        done.redirect
            .starts_with(&format!("http://localhost:{port}/oidc/callback?")),
        "the provider did not send alice back to the CLI: {} {:?}",
        done.redirect,
        done.pages
    );
    // The browser follows the redirect to the CLI's listener (bound on 127.0.0.1).
    let delivered = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
        ])
        .arg(&done.redirect)
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&delivered.stdout).into_owned();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "bao login failed: {:?}\nlistener page: {page}\nstderr: {printed:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("bao login -format=json prints the auth")
}

#[test]
fn bao_login_with_oidc_goes_through_the_provider_in_the_root_namespace_and_in_a_tenant() {
    let port = free_port();
    let idp = provider(port);
    let broker = Broker::dev();
    let mut tokens = Vec::new();
    for namespace in ["", "acme"] {
        if !namespace.is_empty() {
            broker.bao_ok(&["namespace", "create", namespace]);
        }
        configure(&broker, namespace, &idp);
        // The client secret is kept, sealed, and never read back.
        let (status, config) =
            broker.request_as(&broker.token, namespace, "GET", "auth/oidc/config", None);
        assert_eq!(status, 200, "{config}");
        assert_eq!(config["data"]["oidc_client_id"], CLIENT);
        assert!(!config.to_string().contains(SECRET), "{config}");

        let login = bao_oidc_login(&broker, namespace, &idp, port);
        let auth = &login["auth"];
        let token = auth["client_token"].as_str().expect("a token");
        assert_eq!(auth["policies"], json!(["default", "people"]), "{login}");
        assert_eq!(auth["metadata"]["role"], "people");
        assert_eq!(auth["metadata"]["name"], "Alice");
        // The token is the tenant's, with the role's policies.
        let (status, me) =
            broker.request_as(token, namespace, "GET", "auth/token/lookup-self", None);
        assert_eq!(status, 200, "{me}");
        // Vault's: the mount's path, then the user.
        assert_eq!(me["data"]["display_name"], "oidc-alice@example.com");
        assert_eq!(me["data"]["policies"], json!(["default", "people"]));
        tokens.push(token.to_owned());
    }
    // Each person's token works in its own namespace only.
    let (status, _) = broker.request_as(&tokens[0], "acme", "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 403, "the root namespace's token in acme");
    let (status, _) = broker.request_as(&tokens[1], "", "GET", "auth/token/lookup-self", None);
    assert_eq!(status, 403, "acme's token in the root namespace");
}

#[test]
fn every_refused_callback_gets_the_same_answer_and_no_token() {
    let idp = provider(free_port());
    let broker = Broker::dev();
    configure(&broker, "", &idp);
    broker.bao_ok(&["auth", "enable", "-path=other", "oidc"]);
    let other_body = json!({
        "oidc_discovery_url": idp.issuer,
        "oidc_discovery_ca_pem": idp.ca_pem_text(),
        "oidc_client_id": CLIENT,
        "oidc_client_secret": SECRET,
    });
    let (status, answer) = broker.request_as(
        &broker.token,
        "",
        "POST",
        "auth/other/config",
        Some(&other_body),
    );
    assert_eq!(status, 204, "{answer}");

    let refused = |(status, body): (u16, String), why: &str| {
        assert_eq!(status, 400, "{why}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body, json!({ "errors": [FAILED] }), "{why}");
    };

    // A login that works, once: the state is spent for good.
    let url = auth_url(&broker, "", "nonce-1");
    let (code, state) = person(&idp, &url, "bob", "bob-password");
    refused(
        callback(&broker, "", &state, &code, "another client's nonce"),
        "wrong client_nonce",
    );
    let (status, body) = callback(&broker, "", &state, &code, "nonce-1");
    assert_eq!(status, 200, "{body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(issued["auth"]["metadata"]["role"], "people");
    refused(
        callback(&broker, "", &state, &code, "nonce-1"),
        "replayed state",
    );

    // Unknown, forged and foreign states.
    let url = auth_url(&broker, "", "nonce-2");
    let (code, state) = person(&idp, &url, "bob", "bob-password");
    refused(
        callback(&broker, "", "c3RhdGU", &code, "nonce-2"),
        "unknown state",
    );
    let mut forged = state.clone().into_bytes();
    let last = forged.len() - 5;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    refused(
        callback(
            &broker,
            "",
            &String::from_utf8(forged).unwrap(),
            &code,
            "nonce-2",
        ),
        "forged state",
    );
    let (status, body) = raw_at(
        &broker.addr,
        "GET",
        &format!(
            "auth/other/oidc/callback?state={}&code={}&client_nonce=nonce-2",
            percent_encode(&state),
            percent_encode(&code)
        ),
        None,
        &[],
    );
    refused((status, body), "another mount's state");
    refused(
        callback(&broker, "", &state, "not-the-code", "nonce-2"),
        "a code the provider never gave",
    );
    // The state went with that attempt: the right code no longer helps.
    refused(
        callback(&broker, "", &state, &code, "nonce-2"),
        "a spent state",
    );

    // A redirect URI the role does not allow: no URL at all (Vault's silent answer).
    let (status, answer) = broker.request_as(
        "",
        "",
        "POST",
        "auth/oidc/oidc/auth_url",
        Some(&json!({"role": "people", "redirect_uri": "https://evil.example/callback"})),
    );
    assert_eq!(
        (status, answer["data"]["auth_url"].clone()),
        (200, json!("")),
        "{answer}"
    );

    // A wrong password at the provider: no code, and the provider says so.
    let url = auth_url(&broker, "", "nonce-3");
    let done = idp.person_login(&url, "alice", "not-her-password");
    assert!(done.redirect.is_empty(), "{}", done.redirect);
    assert!(done
        .pages
        .iter()
        .any(|(_, page)| page.contains("invalid login")));

    // Only the one good login made a token.
    let (status, accessors) =
        broker.request_as(&broker.token, "", "LIST", "auth/token/accessors", None);
    assert_eq!(status, 200, "{accessors}");
    let people = accessors["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|accessor| {
            let (_, found) = broker.request_as(
                &broker.token,
                "",
                "POST",
                "auth/token/lookup-accessor",
                Some(&json!({ "accessor": accessor })),
            );
            found["data"]["meta"]["role"] == "people"
        })
        .count();
    assert_eq!(people, 1);
}

#[test]
fn a_provider_that_is_down_refuses_clearly() {
    let mut idp = provider(free_port());
    let broker = Broker::dev();
    configure(&broker, "", &idp);
    let url = auth_url(&broker, "", "nonce");
    let (code, state) = person(&idp, &url, "alice", "alice-password");
    idp.stop();
    // The exchange cannot happen: the same refusal, no token.
    let (status, body) = callback(&broker, "", &state, &code, "nonce");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(FAILED), "{body}");
    // Once the provider is back, a new login works (nothing was left behind).
    idp.restart();
    let url = auth_url(&broker, "", "nonce-2");
    let (code, state) = person(&idp, &url, "alice", "alice-password");
    let (status, body) = callback(&broker, "", &state, &code, "nonce-2");
    assert_eq!(status, 200, "{body}");
}

/// Our addition: the client secret kept out of the API, in the server's configuration
/// (an environment variable or a file), bound to its provider: a configuration written
/// through the API can name it, never send it elsewhere, and a tenant cannot name it.
#[test]
fn a_client_secret_from_the_environment_or_a_file_serves_its_provider_only() {
    let idp = provider(free_port());
    let dir = crate::support::private_dir();
    let secret_file = dir.path().join("people.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let config = format!(
        "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n\
         [oidc_client_secrets.people-env]\nissuer = \"{issuer}\"\nenv = \"KB_E2E_PEOPLE_SECRET\"\n\
         [oidc_client_secrets.people-file]\nissuer = \"{issuer}\"\nfile = \"{file}\"\n",
        issuer = idp.issuer,
        file = secret_file.display(),
    );
    let broker = Broker::start(crate::support::Options {
        config: Some(config),
        env: vec![("KB_E2E_PEOPLE_SECRET".to_owned(), SECRET.to_owned())],
        ..crate::support::Options::default()
    });
    configure(&broker, "", &idp);
    for source in ["people-env", "people-file"] {
        let body = json!({
            "oidc_discovery_url": idp.issuer,
            "oidc_discovery_ca_pem": idp.ca_pem_text(),
            "oidc_client_id": CLIENT,
            "oidc_client_secret_source": source,
            "default_role": "people",
        });
        let (status, answer) =
            broker.request_as(&broker.token, "", "POST", "auth/oidc/config", Some(&body));
        assert_eq!(status, 204, "{source}: {answer}");
        let url = auth_url(&broker, "", source);
        let (code, state) = person(&idp, &url, "alice", "alice-password");
        let (status, body) = callback(&broker, "", &state, &code, source);
        assert_eq!(status, 200, "{source}: {body}");
    }
    // Named for another provider, it is refused when written: the secret never leaves
    // for an address the API chose.
    let (status, answer) = broker.request_as(
        &broker.token,
        "",
        "POST",
        "auth/oidc/config",
        Some(&json!({
            "oidc_discovery_url": "https://evil.example",
            "oidc_client_id": CLIENT,
            "oidc_client_secret_source": "people-env",
        })),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("no such source"), "{answer}");
    // Unknown names answer alike; so does giving a secret beside it.
    for body in [
        json!({"oidc_client_secret_source": "nobody"}),
        json!({"oidc_client_secret_source": "people-env", "oidc_client_secret": "x"}),
    ] {
        let mut body = body;
        body["oidc_discovery_url"] = json!(idp.issuer);
        body["oidc_discovery_ca_pem"] = json!(idp.ca_pem_text());
        body["oidc_client_id"] = json!(CLIENT);
        let (status, answer) =
            broker.request_as(&broker.token, "", "POST", "auth/oidc/config", Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // A tenant cannot name the operator's secrets.
    broker.bao_ok(&["namespace", "create", "acme"]);
    broker.bao_ok(&["auth", "enable", "-namespace=acme", "oidc"]);
    let (status, answer) = broker.request_as(
        &broker.token,
        "acme",
        "POST",
        "auth/oidc/config",
        Some(&json!({
            "oidc_discovery_url": idp.issuer,
            "oidc_discovery_ca_pem": idp.ca_pem_text(),
            "oidc_client_id": CLIENT,
            "oidc_client_secret_source": "people-env",
        })),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("root namespace"), "{answer}");
}
