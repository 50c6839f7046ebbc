//! The configuration of an `azure-keyvault` instance: the drop-in's `[config]` table, as JSON.

use std::path::PathBuf;

use keybroker_plugin_abi::PluginError;
pub use keybroker_plugin_sdk::config::DEFAULT_OPERATION_TIMEOUT_MS;
use keybroker_plugin_sdk::config::{default_operation_timeout_ms, ConfigErrors};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Default `create_timeout_ms`: below the host's default `create_timeout` of 60 s.
pub(crate) const DEFAULT_CREATE_TIMEOUT_MS: u64 = 30_000;
/// Default `max_retries` of the SDK's exponential retry policy.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The Microsoft Entra ID authority of Azure's public cloud.
pub(crate) const PUBLIC_CLOUD_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The `[config]` table of an `azure-keyvault` drop-in.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The vault, e.g. `https://acme.vault.azure.net/`.
    pub vault_url: String,
    /// The directory (tenant) id of the service principal.
    pub tenant_id: String,
    /// The application (client) id of the service principal.
    pub client_id: String,
    /// A file holding the client secret (its surrounding whitespace is ignored).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Refused: secrets do not belong in drop-in files. Only here to say so clearly.
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
    /// The Entra ID authority (default Azure's public cloud); a sovereign cloud's, or a fake.
    #[serde(default = "default_authority_host")]
    pub authority_host: String,
    /// A PEM file of extra root certificates to trust besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Deadline of one operation, retries and token requests included, in milliseconds.
    /// Keep it below the instance's `timeout`.
    #[serde(default = "default_operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// Deadline of a key creation, in milliseconds: Key Vault takes seconds to generate an
    /// RSA key (longer in a managed HSM). Keep it below the instance's `create_timeout`.
    #[serde(default = "default_create_timeout_ms")]
    pub create_timeout_ms: u64,
    /// Retries per request in the SDK's exponential retry policy (0 = no retry).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Whether the SDK checks that Key Vault's authentication challenge names a resource
    /// of the vault's own domain (`*.vault.azure.net` for `vault.azure.net`). Leave it on;
    /// only a test fake on `127.0.0.1` needs it off.
    #[serde(default = "default_true")]
    pub verify_challenge_resource: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret's source is named, never its value (which is not held here anyway).
        f.debug_struct("Config")
            .field("vault_url", &self.vault_url)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret_file", &self.client_secret_file)
            .field("client_secret_env", &self.client_secret_env)
            .field("authority_host", &self.authority_host)
            .field("ca_file", &self.ca_file)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("create_timeout_ms", &self.create_timeout_ms)
            .field("max_retries", &self.max_retries)
            .field("verify_challenge_resource", &self.verify_challenge_resource)
            .finish()
    }
}

fn default_authority_host() -> String {
    PUBLIC_CLOUD_AUTHORITY.to_owned()
}
fn default_create_timeout_ms() -> u64 {
    DEFAULT_CREATE_TIMEOUT_MS
}
fn default_max_retries() -> u32 {
    DEFAULT_MAX_RETRIES
}
fn default_true() -> bool {
    true
}

/// Every config error starts with `azure-keyvault config: `.
const ERRORS: ConfigErrors = ConfigErrors::new("azure-keyvault config");

fn invalid(message: impl std::fmt::Display) -> PluginError {
    ERRORS.invalid(message)
}

/// Whether `text` is an `https://` URL with a host.
fn is_https_url(text: &str) -> bool {
    text.strip_prefix("https://")
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .is_some_and(|host| !host.is_empty())
}

impl Config {
    /// Parses and checks the JSON text of the `[config]` table.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        ERRORS.parse_checked(text, Self::validate)
    }

    fn validate(&self) -> Result<(), PluginError> {
        if self.client_secret.is_some() {
            return Err(invalid(
                "client_secret: a secret must not be written in the drop-in file; put it in a \
                 file readable only by the broker and name it with client_secret_file, or name \
                 an environment variable with client_secret_env",
            ));
        }
        if !is_https_url(&self.vault_url) {
            return Err(invalid(format!(
                "vault_url: {:?} is not an https:// URL (e.g. https://acme.vault.azure.net/)",
                self.vault_url
            )));
        }
        if !is_https_url(&self.authority_host) {
            return Err(invalid(format!(
                "authority_host: {:?} is not an https:// URL",
                self.authority_host
            )));
        }
        let id_like = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        };
        if !id_like(&self.tenant_id) {
            return Err(invalid(
                "tenant_id: must be the directory id (a UUID) or a domain name",
            ));
        }
        if !id_like(&self.client_id) {
            return Err(invalid("client_id: must be the application id (a UUID)"));
        }
        match (&self.client_secret_file, &self.client_secret_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "give either client_secret_file or client_secret_env, not both",
                ))
            }
            (None, None) => {
                return Err(invalid(
                    "the client secret is missing: name a file with client_secret_file or an \
                     environment variable with client_secret_env",
                ))
            }
            _ => {}
        }
        if self.operation_timeout_ms == 0 {
            return Err(invalid("operation_timeout_ms: must be positive"));
        }
        if self.create_timeout_ms == 0 {
            return Err(invalid("create_timeout_ms: must be positive"));
        }
        if self.max_retries > 10 {
            return Err(invalid(format!(
                "max_retries: {} is more than 10",
                self.max_retries
            )));
        }
        Ok(())
    }

    /// Reads the client secret from the file or environment variable the config names.
    /// Errors name the file or variable, never a value.
    pub fn client_secret(&self) -> Result<Zeroizing<String>, PluginError> {
        let secret = match (&self.client_secret_file, &self.client_secret_env) {
            (Some(path), _) => Zeroizing::new(std::fs::read_to_string(path).map_err(|error| {
                invalid(format!(
                    "client_secret_file: cannot read {}: {}",
                    path.display(),
                    error.kind()
                ))
            })?),
            (None, Some(name)) => Zeroizing::new(std::env::var(name).map_err(|_| {
                invalid(format!(
                    "client_secret_env: the environment variable {name} is not set (or not \
                     UTF-8)"
                ))
            })?),
            (None, None) => return Err(invalid("the client secret is missing")),
        };
        let trimmed = Zeroizing::new(secret.trim().to_owned());
        if trimmed.is_empty() {
            return Err(invalid("the client secret is empty"));
        }
        Ok(trimmed)
    }

    /// The extra root certificates of `ca_file`, DER.
    pub fn extra_roots(
        &self,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, PluginError> {
        use rustls_pki_types::pem::PemObject as _;
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let certificates = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|error| {
                invalid(format!(
                    "ca_file: cannot read PEM certificates from {}: {error}",
                    path.display()
                ))
            })?;
        if certificates.is_empty() {
            return Err(invalid(format!(
                "ca_file: {} holds no PEM certificate",
                path.display()
            )));
        }
        Ok(certificates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_conformance::calls::invalid_config_message;

    const BASE: &str =
        r#""vault_url":"https://v.vault.azure.net/","tenant_id":"t","client_id":"c""#;

    fn error(text: &str) -> String {
        invalid_config_message(text, Config::parse(text))
    }

    #[test]
    fn defaults_apply() {
        let config = Config::parse(&format!(r#"{{{BASE},"client_secret_env":"X"}}"#)).unwrap();
        assert_eq!(config.operation_timeout_ms, 1500);
        assert_eq!(config.max_retries, 3);
        assert_eq!(config.authority_host, PUBLIC_CLOUD_AUTHORITY);
        assert!(config.verify_challenge_resource);
        assert!(config.extra_roots().unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_field() {
        let with = |extra: &str| format!(r#"{{{BASE},{extra}}}"#);
        let inline = error(&with(r#""client_secret":"hunter2-not-to-show""#));
        assert!(inline.contains("client_secret_file"), "{inline}");
        assert!(inline.contains("client_secret_env"), "{inline}");
        assert!(!inline.contains("hunter2"), "{inline}");
        assert!(error(&with(
            r#""client_secret_env":"X","client_secret_file":"/f""#
        ))
        .contains("not both"));
        assert!(error(&format!("{{{BASE}}}")).contains("client_secret_file"));
        assert!(error(&with(r#""client_secret_env":"X","vault_uri":"y""#)).contains("vault_uri"));
        assert!(error(
            r#"{"vault_url":"http://v.vault.azure.net","tenant_id":"t","client_id":"c","client_secret_env":"X"}"#
        )
        .contains("vault_url"));
        assert!(
            error(&with(r#""client_secret_env":"X","operation_timeout_ms":0"#))
                .contains("operation_timeout_ms")
        );
        assert!(error(
            &with(r#""client_secret_env":"X","authority_host":"login.example"#)
                .replace("example", "example\"")
        )
        .contains("authority_host"));
    }

    #[test]
    fn secrets_are_read_from_where_the_config_says_and_never_shown() {
        std::env::set_var("KEYBROKER_TEST_AZURE_SECRET_PRESENT", " from-env \n");
        let config = Config::parse(&format!(
            r#"{{{BASE},"client_secret_env":"KEYBROKER_TEST_AZURE_SECRET_PRESENT"}}"#
        ))
        .unwrap();
        assert_eq!(config.client_secret().unwrap().as_str(), "from-env");
        assert!(!format!("{config:?}").contains("from-env"));
        let config = Config::parse(&format!(
            r#"{{{BASE},"client_secret_env":"KEYBROKER_TEST_AZURE_SECRET_ABSENT"}}"#
        ))
        .unwrap();
        let error = config.client_secret().unwrap_err();
        assert!(error.message.contains("KEYBROKER_TEST_AZURE_SECRET_ABSENT"));
        let config = Config::parse(&format!(
            r#"{{{BASE},"client_secret_file":"/nonexistent/keybroker-secret"}}"#
        ))
        .unwrap();
        let error = config.client_secret().unwrap_err();
        assert!(error.message.contains("/nonexistent/keybroker-secret"));
    }
}
