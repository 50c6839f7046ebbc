//! The configuration of an `aws-kms` instance: the drop-in's `[config]` table, as JSON.

use std::path::PathBuf;

use keybroker_plugin_abi::PluginError;
pub use keybroker_plugin_sdk::config::DEFAULT_OPERATION_TIMEOUT_MS;
use keybroker_plugin_sdk::config::{default_operation_timeout_ms, ConfigErrors};
use serde::Deserialize;

/// KMS's own limit on `Encrypt` plaintexts, and the default and largest `max_payload`.
pub const KMS_MAX_PAYLOAD: u64 = 4096;
/// Default `max_attempts` of the SDK's standard retry mode.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The `[config]` table of an `aws-kms` drop-in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// An endpoint URL instead of the region's (a VPC endpoint, moto in tests).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where credentials come from; absent: the standard AWS chain.
    #[serde(default)]
    pub credentials: Option<CredentialsConfig>,
    /// Deadline of one operation, retries included, in milliseconds. Keep it below the
    /// instance's `timeout`, so the plugin answers before the host gives up on the call.
    #[serde(default = "default_operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// Attempts per operation in the SDK's standard retry mode (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Largest plaintext for `encrypt`, at most KMS's 4096 bytes.
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
}

/// `credentials`: either names of environment variables, or a shared-credentials file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Environment variable holding the access key id.
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// Environment variable holding a session token (temporary credentials).
    #[serde(default)]
    pub session_token_env: Option<String>,
    /// A shared-credentials file (`~/.aws/credentials` syntax).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The profile of `file` to use (default `default`).
    #[serde(default)]
    pub profile: Option<String>,
}

/// Where the credentials come from, once the configuration is checked.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// The standard AWS chain (environment, profile, web identity, container, IMDS).
    DefaultChain,
    /// Environment variables named in the config.
    Environment {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// A shared-credentials file.
    File { path: PathBuf, profile: String },
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}
fn default_max_payload() -> u64 {
    KMS_MAX_PAYLOAD
}

/// Every config error starts with `aws-kms config: `.
const ERRORS: ConfigErrors = ConfigErrors::new("aws-kms config");

fn invalid(message: impl std::fmt::Display) -> PluginError {
    ERRORS.invalid(message)
}

impl Config {
    /// Parses and checks the JSON text of the `[config]` table.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        ERRORS.parse_checked(text, Self::validate)
    }

    fn validate(&self) -> Result<(), PluginError> {
        if self.region.trim().is_empty() {
            return Err(invalid("region: must not be empty"));
        }
        if let Some(endpoint) = &self.endpoint {
            if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                return Err(invalid(format!(
                    "endpoint: {endpoint:?} is not an http:// or https:// URL"
                )));
            }
        }
        if self.operation_timeout_ms == 0 {
            return Err(invalid("operation_timeout_ms: must be positive"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts: must be at least 1"));
        }
        if self.max_payload == 0 || self.max_payload > KMS_MAX_PAYLOAD {
            return Err(invalid(format!(
                "max_payload: {} is not between 1 and KMS's limit of {KMS_MAX_PAYLOAD} bytes",
                self.max_payload
            )));
        }
        self.credential_form().map(|_| ())
    }

    /// Which form `credentials` has; an error for a mix of both or a half of one.
    fn credential_form(&self) -> Result<Option<bool>, PluginError> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let environment = credentials.access_key_id_env.is_some()
            || credentials.secret_access_key_env.is_some()
            || credentials.session_token_env.is_some();
        let file = credentials.file.is_some() || credentials.profile.is_some();
        match (environment, file) {
            (true, true) => Err(invalid(
                "credentials: give either access_key_id_env and secret_access_key_env, or \
                 file (and profile), not both",
            )),
            (false, false) => Err(invalid(
                "credentials: give access_key_id_env and secret_access_key_env, or file; \
                 leave the table out for the standard AWS chain",
            )),
            (true, false) => {
                if credentials.access_key_id_env.is_none() {
                    return Err(invalid("credentials.access_key_id_env: missing"));
                }
                if credentials.secret_access_key_env.is_none() {
                    return Err(invalid("credentials.secret_access_key_env: missing"));
                }
                Ok(Some(true))
            }
            (false, true) => {
                if credentials.file.is_none() {
                    return Err(invalid("credentials.file: missing (profile needs a file)"));
                }
                Ok(Some(false))
            }
        }
    }

    /// Resolves the credential source, reading the environment variables the config names.
    /// Errors name the variable or file, never a value.
    pub fn credential_source(&self) -> Result<CredentialSource, PluginError> {
        let Some(credentials) = &self.credentials else {
            return Ok(CredentialSource::DefaultChain);
        };
        let read = |field: &str, name: &str| {
            std::env::var(name).map_err(|_| {
                invalid(format!(
                    "credentials.{field}: the environment variable {name} is not set (or not \
                     UTF-8)"
                ))
            })
        };
        match self.credential_form()? {
            Some(true) => {
                let (Some(access), Some(secret)) = (
                    &credentials.access_key_id_env,
                    &credentials.secret_access_key_env,
                ) else {
                    return Err(invalid("credentials: incomplete"));
                };
                Ok(CredentialSource::Environment {
                    access_key_id: read("access_key_id_env", access)?,
                    secret_access_key: read("secret_access_key_env", secret)?,
                    session_token: credentials
                        .session_token_env
                        .as_deref()
                        .map(|name| read("session_token_env", name))
                        .transpose()?,
                })
            }
            Some(false) => {
                let Some(path) = &credentials.file else {
                    return Err(invalid("credentials.file: missing"));
                };
                if !path.is_file() {
                    return Err(invalid(format!(
                        "credentials.file: {} is not a readable file",
                        path.display()
                    )));
                }
                Ok(CredentialSource::File {
                    path: path.clone(),
                    profile: credentials
                        .profile
                        .clone()
                        .unwrap_or_else(|| "default".to_owned()),
                })
            }
            None => Ok(CredentialSource::DefaultChain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keybroker_plugin_abi::ErrorKind;
    use keybroker_plugin_conformance::calls::invalid_config_message;

    fn error(text: &str) -> String {
        invalid_config_message(text, Config::parse(text))
    }

    #[test]
    fn defaults_apply() {
        let config = Config::parse(r#"{"region":"eu-west-1"}"#).unwrap();
        assert_eq!(config.operation_timeout_ms, 1500);
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.max_payload, 4096);
        assert!(matches!(
            config.credential_source().unwrap(),
            CredentialSource::DefaultChain
        ));
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error("{}").contains("region"));
        assert!(error(r#"{"region":"x","regoin":"y"}"#).contains("regoin"));
        assert!(error(r#"{"region":"x","max_payload":4097}"#).contains("max_payload"));
        assert!(error(r#"{"region":"x","max_attempts":0}"#).contains("max_attempts"));
        assert!(error(r#"{"region":"x","endpoint":"localhost:1"}"#).contains("endpoint"));
        assert!(
            error(r#"{"region":"x","credentials":{"file":"/f","access_key_id_env":"A"}}"#)
                .contains("not both")
        );
        assert!(
            error(r#"{"region":"x","credentials":{"access_key_id_env":"A"}}"#)
                .contains("secret_access_key_env")
        );
        assert!(error(r#"{"region":"x","credentials":{"secret":"A"}}"#).contains("secret"));
    }

    #[test]
    fn a_missing_credentials_file_is_named() {
        let config = Config::parse(
            r#"{"region":"x","credentials":{"file":"/nonexistent/keybroker-creds"}}"#,
        )
        .unwrap();
        let error = config.credential_source().err().unwrap();
        assert_eq!(error.kind, ErrorKind::INVALID_CONFIG);
        assert!(error.message.contains("/nonexistent/keybroker-creds"));
    }
}
