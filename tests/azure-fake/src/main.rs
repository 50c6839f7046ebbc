//! Runs the Azure Key Vault fake until interrupted, printing its URLs and CA file as one JSON
//! line: `keybroker-azure-fake [--port P] [--tenant T] [--client-id C] [--client-secret S]`
//! (or the environment variables `AZURE_FAKE_PORT`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`).

use std::io::Write as _;

use keybroker_azure_fake::AzureFake;

fn main() -> std::process::ExitCode {
    let mut port = std::env::var("AZURE_FAKE_PORT").unwrap_or_else(|_| "0".to_owned());
    let mut tenant = std::env::var("AZURE_TENANT_ID").unwrap_or_else(|_| "fake-tenant".to_owned());
    let mut client_id =
        std::env::var("AZURE_CLIENT_ID").unwrap_or_else(|_| "fake-client".to_owned());
    let mut client_secret =
        std::env::var("AZURE_CLIENT_SECRET").unwrap_or_else(|_| "fake-secret".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let target = match flag.as_str() {
            "--port" => &mut port,
            "--tenant" => &mut tenant,
            "--client-id" => &mut client_id,
            "--client-secret" => &mut client_secret,
            _ => {
                eprintln!("usage: keybroker-azure-fake [--port P] [--tenant T] [--client-id C] [--client-secret S]");
                return std::process::ExitCode::from(2);
            }
        };
        match args.next() {
            Some(value) => *target = value,
            None => {
                eprintln!("{flag} needs a value");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("invalid port {port}");
        return std::process::ExitCode::from(2);
    };
    let fake = match AzureFake::try_start_on(&tenant, &client_id, &client_secret, port) {
        Ok(fake) => fake,
        Err(error) => {
            eprintln!("{error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let line = serde_json::json!({
        "vault_url": fake.vault_url(),
        "authority_host": fake.authority_host(),
        "token_url": fake.token_url(),
        "ca_pem_path": fake.ca_pem_path(),
        "tenant_id": fake.tenant(),
        "client_id": fake.client_id(),
    });
    println!("{line}");
    let _ = std::io::stdout().flush();
    // Serve until the process is killed; the fake's thread does the work.
    loop {
        std::thread::park();
    }
}
