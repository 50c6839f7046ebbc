//! The OpenAPI document (`sys/internal/specs/openapi`, issue 20), against the real binary:
//! anyone may read it, it documents every route, and schemathesis (PyPI, installed into
//! `.venv` by `tests/run`) drives every documented operation with requests generated from
//! it, as the root token, expecting no 5xx answer.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::{repo_root, Broker};

/// schemathesis' command line: `KEYBROKER_SCHEMATHESIS`, else `.venv/bin/schemathesis`.
fn schemathesis_bin() -> PathBuf {
    let path = std::env::var_os("KEYBROKER_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/schemathesis"));
    assert!(
        path.exists(),
        "{} is missing: tests/run installs schemathesis into .venv",
        path.display()
    );
    path
}

/// Operations left out of the generated run, each because it would end the run itself
/// rather than because it answers badly (each is covered by its own tests):
/// - `auth/token/revoke-self`: revokes the root token the run calls with.
/// - `sys/plugins/reload`: reloads every backend plugin, slow and racing the run's own
///   transit calls; nothing in it comes from the request body.
const EXCLUDED_PATHS: &str = "^/(auth/token/revoke-self|sys/plugins/reload)$";

#[test]
fn the_document_is_served_to_anyone_and_no_generated_request_gets_a_5xx() {
    let broker = Broker::dev();
    // The document shows mounted kinds at their default paths: mount them there (a dev
    // broker has `transit/`).
    broker.bao_ok(&["auth", "enable", "approle"]);
    broker.bao_ok(&["auth", "enable", "jwt"]);

    // Anyone may read it (Vault: unauthenticated), and it is OpenAPI 3.
    let (status, doc) = broker.request_with("GET", "sys/internal/specs/openapi", None, &[]);
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.0.2");
    assert!(doc["paths"]["/transit/encrypt/{name}"]["post"].is_object());
    assert!(doc["paths"]["/auth/approle/role/"]["get"].is_object());
    let (status, _) = broker.request_with(
        "GET",
        "sys/internal/specs/openapi",
        None,
        &[("X-Vault-Namespace", "nowhere")],
    );
    assert_eq!(status, 200);

    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("openapi.json");
    std::fs::write(&schema, serde_json::to_vec(&doc).unwrap()).unwrap();
    // First pass: every parameter generated (mostly names that do not exist).
    schemathesis(&broker, dir.path(), "20");
    // Second pass: every `{name}` and `{role_name}` names things that exist, so generated
    // bodies reach the handlers' work (a transit key, roles, a policy).
    broker.bao_ok(&["write", "-f", "transit/keys/k"]);
    broker.bao_ok(&["write", "auth/approle/role/k", "token_policies=default"]);
    broker.bao_ok(&[
        "write",
        "auth/jwt/role/k",
        "role_type=jwt",
        "user_claim=sub",
        "bound_audiences=a",
    ]);
    broker.bao_ok(&["write", "auth/token/roles/k", "allowed_policies=default"]);
    let policy = serde_json::json!({ "policy": "path \"k/*\" { capabilities = [\"read\"] }" });
    let (status, body) = broker.request("POST", "sys/policies/acl/k", Some(&policy));
    assert_eq!(status, 204, "{body}");
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        "[parameters]\n\"path.name\" = \"k\"\n\"path.role_name\" = \"k\"\n",
    )
    .unwrap();
    schemathesis(&broker, dir.path(), "21");
}

/// Runs schemathesis in `dir` (its `openapi.json`, and its `schemathesis.toml` if any)
/// against `broker` as the root token, failing on any 5xx answer.
fn schemathesis(broker: &Broker, dir: &Path, seed: &str) {
    let base = format!("{}/v1", broker.addr);
    let token = format!("X-Vault-Token: {}", broker.token);
    let output = Command::new(schemathesis_bin())
        .current_dir(dir)
        .args(["run", "openapi.json"])
        .args(["--url", &base])
        .args(["-H", &token])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "5"])
        .args(["--seed", seed])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: Python 3.11's `ast` is not thread-safe, and hypothesis parses with it.
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--generation-database", "none"])
        .args(["--exclude-path-regex", EXCLUDED_PATHS])
        .args(["--no-color", "--output-truncate", "true"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}\nbroker log (tail):\n{}",
        tail(&broker.log(), 4000)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    println!("{stdout}");
}

/// The last `n` bytes of `text` (on a character boundary).
fn tail(text: &str, n: usize) -> &str {
    let mut start = text.len().saturating_sub(n);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
