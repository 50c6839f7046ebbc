//! The KV engine (issue 21) against a real OpenBao: every `bao kv` command, run unmodified
//! on both servers, answers the same (times and request ids aside), and so do the raw
//! HTTP answers real integrators depend on (status codes, 404 bodies, 415 for a PATCH
//! without a merge patch).

use std::process::Output;

use serde_json::{json, Value};

use crate::support::{self, openbao::OpenBao, Broker};

/// The parts of an answer that differ between two servers by nature: times, request ids,
/// accessors. Times become `"<time>"` (empty stays empty: "not deleted").
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match key.as_str() {
                    "request_id" | "accessor" | "uuid" | "running_plugin_version" => {
                        *item = Value::Null
                    }
                    "created_time" | "updated_time" | "deletion_time" => {
                        if item.as_str().is_some_and(|s| !s.is_empty()) {
                            *item = json!("<time>");
                        }
                    }
                    _ => normalize(item),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// What a `bao` run shows: its exit code, its JSON output normalized, and its error lines
/// without the server's address.
fn shown(out: &Output) -> (Option<i32>, Value, Vec<String>) {
    let mut value: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    normalize(&mut value);
    let errors = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.trim_start().starts_with("* ") || l.starts_with("Code:"))
        .map(str::to_owned)
        .collect();
    (out.status.code(), value, errors)
}

struct Pair {
    broker: Broker,
    bao: OpenBao,
}

impl Pair {
    fn start() -> Pair {
        Pair {
            broker: Broker::dev(),
            bao: OpenBao::start(),
        }
    }

    /// Runs `bao <args>` (with `-format=json` where the command takes it) on both and
    /// asserts they show the same; returns keybroker's JSON.
    fn compare(&self, args: &[&str]) -> (Option<i32>, Value) {
        let mut args: Vec<&str> = args.to_vec();
        // The flag goes right after the command's words (`kv metadata get`, `read`).
        let words = match args.as_slice() {
            ["kv", "metadata", "get", ..] => Some(3),
            ["kv", "get" | "put" | "patch" | "list" | "rollback", ..] => Some(2),
            ["read" | "write", ..] => Some(1),
            _ => None,
        };
        if let Some(words) = words {
            args.insert(words.min(args.len()), "-format=json");
        }
        let ours = shown(&self.broker.bao(&args));
        let theirs = shown(&self.bao.bao(&args));
        assert_eq!(
            ours, theirs,
            "bao {args:?}: keybroker (left) and OpenBao (right)"
        );
        (ours.0, ours.1)
    }

    /// [`Pair::compare`] of a command that succeeds on both.
    fn same(&self, args: &[&str]) -> Value {
        let (code, value) = self.compare(args);
        assert_eq!(code, Some(0), "bao {args:?} failed on both");
        value
    }

    /// [`Pair::compare`] of a command refused (or finding nothing) on both.
    fn same_refusal(&self, args: &[&str]) -> Value {
        let (code, value) = self.compare(args);
        assert_ne!(code, Some(0), "bao {args:?} succeeded on both");
        value
    }

    /// A raw request to both with the root token; asserts the same status and normalized
    /// body; returns keybroker's.
    fn same_http(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut all = vec![("X-Vault-Token", "root")];
        all.extend_from_slice(headers);
        let mut mine = vec![("X-Vault-Token", self.broker.token.as_str())];
        mine.extend_from_slice(headers);
        let (ours, ours_body) = support::raw_at(&self.broker.addr, method, path, body, &mine);
        let (theirs, theirs_body) = support::raw_at(&self.bao.addr, method, path, body, &all);
        let parse = |text: &str| {
            let mut v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            normalize(&mut v);
            v
        };
        let (ours_body, theirs_body) = (parse(&ours_body), parse(&theirs_body));
        assert_eq!(
            (ours, &ours_body),
            (theirs, &theirs_body),
            "{method} {path}: keybroker (left) and OpenBao (right)"
        );
        (ours, ours_body)
    }
}

#[test]
fn every_bao_kv_command_answers_as_openbao() {
    let pair = Pair::start();
    // Version 2 at `secret/`, as both dev servers mount it.
    let written = pair.same(&["kv", "put", "secret/app", "a=1", "b=2"]);
    assert_eq!(written["data"]["version"], 1);
    pair.same(&["kv", "get", "secret/app"]);
    pair.same(&["kv", "patch", "secret/app", "c=3"]);
    pair.same(&["kv", "patch", "-method=rw", "secret/app", "d=4"]);
    let read = pair.same(&["kv", "get", "secret/app"]);
    assert_eq!(
        read["data"]["data"],
        json!({"a": "1", "b": "2", "c": "3", "d": "4"})
    );
    pair.same(&["kv", "get", "-version=1", "secret/app"]);
    pair.same_refusal(&["kv", "get", "-version=9", "secret/app"]);
    pair.same(&["kv", "get", "-field=c", "secret/app"]);
    pair.same(&["kv", "delete", "secret/app"]);
    let deleted = pair.same(&["kv", "get", "secret/app"]);
    assert_eq!(deleted["data"]["data"], Value::Null);
    pair.same(&["kv", "undelete", "-versions=3", "secret/app"]);
    pair.same(&["kv", "get", "secret/app"]);
    pair.same(&["kv", "destroy", "-versions=2", "secret/app"]);
    let destroyed = pair.same(&["kv", "get", "-version=2", "secret/app"]);
    assert_eq!(destroyed["data"]["metadata"]["destroyed"], true);
    pair.same(&["kv", "delete", "-versions=1", "secret/app"]);
    pair.same(&["kv", "rollback", "-version=3", "secret/app"]);
    let metadata = pair.same(&["kv", "metadata", "get", "secret/app"]);
    assert_eq!(metadata["data"]["current_version"], 4);
    pair.same(&[
        "kv",
        "metadata",
        "put",
        "-max-versions=2",
        "-cas-required=true",
        "-delete-version-after=1h",
        "-custom-metadata=owner=me",
        "secret/app",
    ]);
    pair.same_refusal(&["kv", "put", "secret/app", "e=5"]);
    pair.same_refusal(&["kv", "put", "-cas=3", "secret/app", "e=5"]);
    pair.same(&["kv", "put", "-cas=4", "secret/app", "e=5"]);
    let pruned = pair.same(&["kv", "metadata", "get", "secret/app"]);
    assert_eq!(pruned["data"]["oldest_version"], 4);
    pair.same(&[
        "kv",
        "metadata",
        "patch",
        "-custom-metadata=team=x",
        "secret/app",
    ]);
    pair.same(&["kv", "metadata", "get", "secret/app"]);
    pair.same(&["kv", "put", "secret/dir/one", "x=1"]);
    pair.same(&["kv", "put", "secret/dir/sub/two", "x=2"]);
    pair.same(&["kv", "list", "secret/"]);
    pair.same(&["kv", "list", "secret/dir"]);
    pair.same_refusal(&["kv", "list", "secret/nothing"]);
    pair.same(&["read", "secret/subkeys/dir/sub/two"]);
    // Create-only writes: the second is refused.
    pair.same(&["kv", "put", "-cas=0", "secret/once", "k=v"]);
    pair.same_refusal(&["kv", "put", "-cas=0", "secret/once", "k=w"]);
    pair.same(&[
        "write",
        "secret/config",
        "max_versions=5",
        "delete_version_after=90s",
    ]);
    pair.same(&["read", "secret/config"]);
    pair.same(&["kv", "metadata", "delete", "secret/app"]);
    pair.same_refusal(&["kv", "get", "secret/app"]);
    pair.same_refusal(&["kv", "metadata", "get", "secret/app"]);

    // Version 1, then versioning enabled on it.
    pair.same(&["secrets", "enable", "-version=1", "-path=kv1", "kv"]);
    pair.same(&["kv", "put", "kv1/a/b", "x=1"]);
    pair.same(&["kv", "put", "kv1/a/b", "x=2"]);
    pair.same(&["kv", "get", "kv1/a/b"]);
    pair.same(&["kv", "list", "kv1/"]);
    pair.same(&["kv", "list", "kv1/a"]);
    pair.same(&["kv", "put", "kv1/c", "y=1"]);
    pair.same(&["kv", "delete", "kv1/c"]);
    pair.same_refusal(&["kv", "get", "kv1/c"]);
    pair.same(&["kv", "enable-versioning", "kv1"]);
    pair.same(&["kv", "get", "kv1/a/b"]);
    pair.same(&["kv", "put", "kv1/a/b", "x=3"]);
    pair.same(&["kv", "metadata", "get", "kv1/a/b"]);
    // `kv-v2` as the type, and the mount's options as pg_tde reads them.
    pair.same(&["secrets", "enable", "-path=kv2", "kv-v2"]);
    let (_, mount) = pair.same_http("GET", "sys/mounts/kv2", None, &[]);
    assert_eq!(mount["data"]["options"]["version"], "2");
    assert_eq!(mount["data"]["type"], "kv");
}

#[test]
fn raw_answers_are_openbaos() {
    let pair = Pair::start();
    // A read of a missing secret the token may read: 404 with no message.
    let (status, body) = pair.same_http("GET", "secret/data/missing", None, &[]);
    assert_eq!((status, &body["errors"]), (404, &json!([])));
    // A write answers 200 with the version, even without a content type.
    let (status, body) = pair.same_http(
        "POST",
        "secret/data/w",
        Some(r#"{"data":{"value":"s"}}"#),
        &[],
    );
    assert_eq!((status, &body["data"]["version"]), (200, &json!(1)));
    pair.same_http(
        "PUT",
        "secret/data/w",
        Some(r#"{"data":{"key":"k"},"options":{"cas":0}}"#),
        &[],
    );
    pair.same_http(
        "POST",
        "secret/data/w",
        Some(r#"{"options":{"cas":1}}"#),
        &[],
    );
    // PATCH needs a merge patch.
    pair.same_http("PATCH", "secret/data/w", Some(r#"{"data":{"b":"c"}}"#), &[]);
    let (status, _) = pair.same_http(
        "PATCH",
        "secret/data/w",
        Some(r#"{"data":{"b":"c"}}"#),
        &[("Content-Type", "application/json")],
    );
    assert_eq!(status, 415);
    pair.same_http(
        "PATCH",
        "secret/data/w",
        Some(r#"{"data":{"b":"c"}}"#),
        &[("Content-Type", "application/merge-patch+json")],
    );
    pair.same_http(
        "PATCH",
        "secret/data/missing",
        Some(r#"{"data":{"b":"c"}}"#),
        &[("Content-Type", "application/merge-patch+json")],
    );
    pair.same_http("GET", "secret/data/w?version=1", None, &[]);
    pair.same_http("GET", "secret/metadata/?list=true", None, &[]);
    pair.same_http("LIST", "secret/metadata", None, &[]);
    pair.same_http("POST", "secret/delete/w", Some(r#"{"versions":[1]}"#), &[]);
    // A deleted version: 404 with its metadata and no data.
    let (status, body) = pair.same_http("GET", "secret/data/w?version=1", None, &[]);
    assert_eq!((status, &body["data"]["data"]), (404, &Value::Null));
    pair.same_http("POST", "secret/destroy/w", Some(r#"{"versions":"2"}"#), &[]);
    pair.same_http("GET", "secret/data/w", None, &[]);
    pair.same_http("GET", "secret/subkeys/w?version=1", None, &[]);
    pair.same_http("DELETE", "secret/metadata/w", None, &[]);
    pair.same_http("GET", "secret/metadata/w", None, &[]);
}
