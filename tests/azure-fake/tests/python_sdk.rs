//! The fake's fidelity: the official Python SDK (`azure-keyvault-keys` with `azure-identity`)
//! round-trips against it (`python/check_fake.py`). Needs `<repo>/.venv` with those packages;
//! fails, saying what to install, when they are missing (tests/run installs them).

// A test: failing loudly, with the reason, is its job.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::{path::PathBuf, process::Command, time::Duration};

use keybroker_azure_fake::{AzureFake, KeySpec, Operation};

const INSTALL_HINT: &str = "create the venv and install the Azure SDK: python3 -m venv .venv && \
     .venv/bin/pip install azure-keyvault-keys azure-identity (tests/run does)";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: {INSTALL_HINT}",
        python.display()
    );
    let imports = Command::new(&python)
        .args([
            "-c",
            "import azure.keyvault.keys, azure.identity, cryptography",
        ])
        .output()
        .expect("run the venv's python");
    assert!(
        imports.status.success(),
        "the venv lacks the Azure SDK ({}): {INSTALL_HINT}",
        String::from_utf8_lossy(&imports.stderr).trim()
    );
    python
}

#[test]
fn official_python_sdk_round_trips_against_the_fake() {
    let python = venv_python();
    let fake = AzureFake::start("kb-tenant", "kb-client", "kb-secret");
    // Get Key refused on these two, so CryptographyClient does everything remotely.
    fake.create_key("remote-rsa", KeySpec::Rsa(2048)).unwrap();
    fake.create_key("remote-ec", KeySpec::P256).unwrap();
    fake.deny_for_key(Operation::Get, "remote-rsa");
    fake.deny_for_key(Operation::Get, "remote-ec");
    // The script's first authenticated request meets two 429s.
    fake.throttle(2, Duration::from_secs(1));

    let output = Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/check_fake.py"))
        .env("AZURE_FAKE_VAULT_URL", fake.vault_url())
        .env("AZURE_FAKE_AUTHORITY_HOST", fake.authority_host())
        .env("AZURE_FAKE_CA_PEM", fake.ca_pem_path())
        .env("AZURE_TENANT_ID", fake.tenant())
        .env("AZURE_CLIENT_ID", fake.client_id())
        .env("AZURE_CLIENT_SECRET", fake.client_secret())
        .env("AZURE_FAKE_REMOTE_RSA", "remote-rsa")
        .env("AZURE_FAKE_REMOTE_EC", "remote-ec")
        .env("AZURE_FAKE_THROTTLED", "2")
        .output()
        .expect("run check_fake.py");
    let report = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "check_fake.py failed:\n{report}");

    // The SDK really reached the fake for each operation (not only its local crypto).
    assert_eq!(fake.state().throttle_remaining(), 0, "{report}");
    for operation in [
        Operation::Create,
        Operation::Get,
        Operation::Update,
        Operation::WrapKey,
        Operation::UnwrapKey,
        Operation::Sign,
        Operation::Verify,
        Operation::Token,
        Operation::Discovery,
        Operation::Delete,
        Operation::List,
        Operation::GetDeleted,
    ] {
        assert!(
            fake.request_count(operation) > 0,
            "no {operation:?} request reached the fake\n{report}"
        );
    }
}
