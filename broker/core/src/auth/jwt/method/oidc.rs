//! The OIDC authorization-code flow of a jwt mount, for people (Vault API:
//! `auth/<mount>/oidc/auth_url`, `auth/<mount>/oidc/callback`).
//!
//! - `auth_url` answers the provider's authorization URL for an `oidc` role and an allowed
//!   redirect URI, with a fresh `nonce` and a PKCE challenge (S256). What the callback needs
//!   (role, redirect URI, nonce, PKCE verifier, a hash of the client's `client_nonce`,
//!   expiry) travels in `state` itself, sealed under a secret the root key seals and bound
//!   to the tenant and mount: nothing is stored for a pending login, any node can finish
//!   it, and an anonymous caller asking for URLs writes nothing.
//! - `callback` opens the state (refused if forged, from another mount or older than
//!   [`STATE_TTL`]), checks the `client_nonce`, spends the state once for all nodes (a
//!   marker in the mount's storage, written only if absent, kept until the state expires),
//!   exchanges the code with the PKCE verifier and the client's secret, verifies the ID
//!   token as a JWT login verifies a JWT (signature by the discovered keys, issuer, expiry)
//!   with the client as audience and the login's `nonce`, and issues a token as a JWT login
//!   does. Every refusal is the same [`CALLBACK_FAILED`]; the reason goes to the debug log.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{from_bound, issue, role_key, JwtAuth, CONFIG_KEY};
use crate::{
    auth::{
        jwt::{CodeExchange, JwtConfig, JwtRole},
        token::{IssuedToken, Tokens},
    },
    error::{Error, Result},
    mount_storage::MountStorage,
    mounts::Mounts,
    seal::RootKey,
    store::{Expect, MountRecord},
};

/// Seconds a pending login may take, from `auth_url` to `callback` (Vault's 10 minutes).
pub const STATE_TTL: i64 = 600;

/// The answer to every refused callback, whatever the reason (logged at debug).
pub const CALLBACK_FAILED: &str =
    "Vault login failed. Expired or missing OAuth state, or the provider's answer was refused.";

/// The answer of `auth_url` on a mount without an OIDC client (Vault's).
pub const NOT_OIDC: &str = "OIDC login is not configured for this mount";

/// The mount-storage key of the sealed client secret.
pub(super) const CLIENT_SECRET_KEY: &str = "oidc_client_secret";

/// The prefix of spent states' markers in mount storage.
const SPENT_PREFIX: &str = "oidc/spent/";

/// Longest `state` accepted, bytes (ours are about 400).
const MAX_STATE_LEN: usize = 4096;

/// Longest `code` or `client_nonce` accepted, bytes.
const MAX_PARAMETER_LEN: usize = 2048;

/// A pending login, as sealed into `state`.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct Pending {
    /// The role (lowercase).
    role: String,
    /// The redirect URI the provider sends the person back to.
    redirect_uri: String,
    /// The OIDC `nonce` the ID token must carry.
    nonce: String,
    /// The PKCE code verifier.
    verifier: String,
    /// SHA-256 (hex) of the caller's `client_nonce`, if it gave one.
    client_nonce: Option<String>,
    /// Unix seconds after which the login is refused.
    expires_at: i64,
}

/// The sealed client secret, as stored.
#[derive(Serialize, Deserialize)]
struct SealedSecret {
    sealed: String,
}

/// `auth_url`'s answer: the provider's URL, or `""` when the role or redirect URI does not
/// allow one (Vault's deliberately silent answer to an anonymous caller).
#[derive(Debug)]
pub struct AuthUrl(pub String);

/// Whether a mount-storage key is a spent state's marker (nothing reads it back but the
/// write that makes it and the tidy).
pub(super) fn is_spent_marker(key: &str) -> bool {
    key.starts_with(SPENT_PREFIX)
}

fn random_text(bytes: usize) -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes(bytes).as_slice())
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `uri` is one of `allowed`; a loopback URI (`localhost`, `127.0.0.1`, `::1`)
/// matches whatever its port (RFC 8252 §7.3), as in Vault.
pub(crate) fn valid_redirect(uri: &str, allowed: &[String]) -> bool {
    let Ok(mut wanted) = url::Url::parse(uri) else {
        return false;
    };
    let loopback = matches!(wanted.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if !loopback {
        return allowed.iter().any(|a| a == uri);
    }
    if wanted.set_port(None).is_err() {
        return false;
    }
    allowed.iter().any(|a| {
        url::Url::parse(a)
            .ok()
            .and_then(|mut allowed| allowed.set_port(None).ok().map(|()| allowed))
            .is_some_and(|allowed| allowed == wanted)
    })
}

fn seal_purpose(mount: &MountRecord, what: &str) -> String {
    format!("{what}:{}:{}", mount.tenant, mount.id)
}

/// `pending` sealed for `mount`, as the `state` parameter.
fn seal_state(sealer: &RootKey, mount: &MountRecord, pending: &Pending) -> Result<String> {
    let plain = Zeroizing::new(
        serde_json::to_vec(pending).map_err(|e| Error::internal_from("OIDC state", e))?,
    );
    Ok(URL_SAFE_NO_PAD.encode(sealer.seal(&seal_purpose(mount, "oidc-state"), &plain)?))
}

/// The pending login a `state` holds, if `mount` sealed it and it has not expired at
/// `now`; otherwise why not (for the debug log).
fn open_state(
    sealer: &RootKey,
    mount: &MountRecord,
    state: &str,
    now: i64,
) -> std::result::Result<Pending, &'static str> {
    if state.is_empty() || state.len() > MAX_STATE_LEN {
        return Err("no state");
    }
    let pending: Pending = URL_SAFE_NO_PAD
        .decode(state)
        .ok()
        .and_then(|sealed| {
            sealer
                .unseal(&seal_purpose(mount, "oidc-state"), &sealed)
                .ok()
        })
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .ok_or("a state this mount did not make")?;
    if now > pending.expires_at {
        return Err("the state expired");
    }
    Ok(pending)
}

impl JwtAuth {
    /// The mount's configuration if it has an OIDC client, with its verifier.
    async fn oidc_config(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
    ) -> Result<(MountStorage, JwtConfig, String)> {
        let storage = self.storage(mounts, mount).await?;
        let config: JwtConfig = self
            .state
            .get(&storage, CONFIG_KEY)
            .await?
            .ok_or_else(|| Error::invalid(NOT_OIDC))?;
        let client_id = config
            .oidc_client_id
            .clone()
            .ok_or_else(|| Error::invalid(NOT_OIDC))?;
        Ok((storage, config, client_id))
    }

    /// Stores (sealed) or removes the mount's client secret, with a configuration write.
    pub(super) async fn store_client_secret(
        &self,
        storage: &MountStorage,
        mount: &MountRecord,
        secret: Option<&str>,
    ) -> Result<()> {
        match secret {
            Some(secret) => {
                let sealed = self
                    .sealer
                    .seal(&seal_purpose(mount, CLIENT_SECRET_KEY), secret.as_bytes())?;
                let stored = SealedSecret {
                    sealed: URL_SAFE_NO_PAD.encode(sealed),
                };
                storage.put(CLIENT_SECRET_KEY, &stored, Expect::Any).await?;
            }
            None => {
                storage.delete(CLIENT_SECRET_KEY, Expect::Any).await?;
            }
        }
        self.state.forget(mount.tenant, mount.id, CLIENT_SECRET_KEY);
        Ok(())
    }

    async fn client_secret(
        &self,
        storage: &MountStorage,
        mount: &MountRecord,
    ) -> Result<Option<Zeroizing<String>>> {
        let Some(stored) = self
            .state
            .get::<SealedSecret>(storage, CLIENT_SECRET_KEY)
            .await?
        else {
            return Ok(None);
        };
        let sealed = URL_SAFE_NO_PAD
            .decode(&stored.sealed)
            .map_err(|e| Error::internal_from("stored OIDC client secret", e))?;
        let plain = self
            .sealer
            .unseal(&seal_purpose(mount, CLIENT_SECRET_KEY), &sealed)?;
        let text = String::from_utf8(plain.to_vec())
            .map_err(|e| Error::internal_from("stored OIDC client secret", e))?;
        Ok(Some(Zeroizing::new(text)))
    }

    /// `auth/<mount>/oidc/auth_url`: the provider's authorization URL for `role` (or the
    /// default role) and `redirect_uri`. Refused (400) as Vault: no OIDC client on the
    /// mount, no role, an unknown role, no redirect URI. A role that is not `oidc` or a
    /// redirect URI it does not allow answer `""`. A provider that cannot be reached is 503.
    pub async fn oidc_auth_url(
        &self,
        mounts: &Mounts,
        mount: &MountRecord,
        role: Option<&str>,
        redirect_uri: &str,
        client_nonce: Option<&str>,
    ) -> Result<AuthUrl> {
        let (storage, config, client_id) = self.oidc_config(mounts, mount).await?;
        let role_name = role
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_ascii_lowercase)
            .or_else(|| config.default_role.clone())
            .ok_or_else(|| Error::invalid("missing role"))?;
        if redirect_uri.is_empty() {
            return Err(Error::invalid("missing redirect_uri"));
        }
        let role: JwtRole = match crate::auth::approle::validate_role_name(&role_name) {
            Ok(name) => self.state.get(&storage, &role_key(&name)).await?,
            Err(_) => None,
        }
        .ok_or_else(|| Error::invalid(format!("role {role_name:?} could not be found")))?;
        if role.role_type != "oidc" || !valid_redirect(redirect_uri, &role.allowed_redirect_uris) {
            tracing::debug!(mount = %mount.path, role = %role_name, "OIDC redirect_uri refused");
            return Ok(AuthUrl(String::new()));
        }
        if client_nonce.is_some_and(|n| n.len() > MAX_PARAMETER_LEN) {
            return Err(Error::invalid("client_nonce is too long"));
        }
        let verifier = self.verifier(mount, &config).await?;
        let endpoint = verifier
            .discovered()
            .and_then(|d| d.authorization_endpoint.clone())
            .ok_or_else(|| {
                tracing::warn!(mount = %mount.path, "the provider names no authorization_endpoint");
                Error::Unavailable("the identity provider has no authorization endpoint".into())
            })?;
        let pending = Pending {
            role: role_name,
            redirect_uri: redirect_uri.to_owned(),
            nonce: random_text(20),
            verifier: random_text(32),
            client_nonce: client_nonce.filter(|n| !n.is_empty()).map(sha256_hex),
            expires_at: self.clock.now_unix() + STATE_TTL,
        };
        let state = seal_state(&self.sealer, mount, &pending)?;
        let mut url = url::Url::parse(&endpoint).map_err(|_| {
            Error::Unavailable("the identity provider's authorization endpoint is invalid".into())
        })?;
        let scopes = std::iter::once("openid")
            .chain(role.oidc_scopes.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        url.query_pairs_mut()
            .append_pair("client_id", &client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", &scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(AuthUrl(url.into()))
    }

    /// `auth/<mount>/oidc/callback`: finishes a login `auth_url` started; a token with the
    /// role's policies. Every refusal is [`CALLBACK_FAILED`].
    #[allow(clippy::too_many_arguments)]
    pub async fn oidc_callback(
        &self,
        mounts: &Mounts,
        tokens: &Tokens,
        mount: &MountRecord,
        state: &str,
        code: &str,
        client_nonce: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<IssuedToken> {
        let refused = |reason: &str| {
            tracing::debug!(mount = %mount.path, reason, "OIDC callback refused");
            Error::invalid(CALLBACK_FAILED)
        };
        let (storage, config, client_id) = match self.oidc_config(mounts, mount).await {
            Ok(found) => found,
            Err(Error::InvalidRequest(_)) => return Err(refused("no OIDC client")),
            Err(other) => return Err(other),
        };
        let now = self.clock.now_unix();
        let pending = open_state(&self.sealer, mount, state, now).map_err(refused)?;
        if code.is_empty() || code.len() > MAX_PARAMETER_LEN {
            return Err(refused("no code"));
        }
        if let Some(wanted) = &pending.client_nonce {
            let given = client_nonce.map(sha256_hex).unwrap_or_default();
            if !bool::from(given.as_bytes().ct_eq(wanted.as_bytes())) {
                return Err(refused("client_nonce mismatch"));
            }
        }
        // Spent once, for every node: a replay finds the marker.
        let marker = format!("{SPENT_PREFIX}{}", sha256_hex(state));
        match storage
            .put(
                &marker,
                &serde_json::json!({ "expires_at": pending.expires_at }),
                Expect::Absent,
            )
            .await
        {
            Ok(_) => {}
            Err(Error::Conflict(_)) => return Err(refused("the state was used before")),
            Err(other) => return Err(other),
        }
        let role: JwtRole = self
            .state
            .get(&storage, &role_key(&pending.role))
            .await?
            .filter(|role: &JwtRole| role.role_type == "oidc")
            .ok_or_else(|| refused("the role is gone or no longer oidc"))?;
        if !from_bound(&role.token_bound_cidrs, client) {
            return Err(refused("the client is outside the role's CIDRs"));
        }
        let verifier = self.verifier(mount, &config).await?;
        let token_endpoint = verifier
            .discovered()
            .and_then(|d| d.token_endpoint.clone())
            .ok_or_else(|| refused("the provider names no token_endpoint"))?;
        let secret = match &config.oidc_client_secret_source {
            Some(source) => Some(
                self.providers
                    .named_client_secret(
                        source,
                        config.oidc_discovery_url.as_deref().unwrap_or_default(),
                    )
                    .map_err(|error| {
                        tracing::warn!(mount = %mount.path, %error, "OIDC client secret source failed");
                        Error::invalid(CALLBACK_FAILED)
                    })?,
            ),
            None => self.client_secret(&storage, mount).await?,
        };
        let exchange = CodeExchange {
            token_endpoint: &token_endpoint,
            ca_pem: config.oidc_discovery_ca_pem.as_deref(),
            client_id: &client_id,
            client_secret: secret.as_deref().map(String::as_str),
            code,
            redirect_uri: &pending.redirect_uri,
            code_verifier: &pending.verifier,
        };
        let id_token = self
            .providers
            .exchange_code(&exchange)
            .await
            .map_err(|error| {
                tracing::warn!(mount = %mount.path, %error, "OIDC code exchange failed");
                Error::invalid(CALLBACK_FAILED)
            })?;
        let verified = verifier
            .verify_id_token(&id_token, &role, now, &client_id, &pending.nonce)
            .await
            .map_err(|_| refused("the ID token was refused"))?;
        issue(tokens, mount, pending.role.clone(), &role, &verified).await
    }

    /// Removes the markers of spent states that have expired (the periodic tidy).
    pub async fn tidy_spent_states(&self, mounts: &Mounts, mount: &MountRecord) -> Result<u64> {
        let storage = self.storage(mounts, mount).await?;
        let now = self.clock.now_unix();
        let mut removed = 0;
        for key in storage.list(SPENT_PREFIX).await? {
            let expired = storage
                .get::<serde_json::Value>(&key)
                .await?
                .and_then(|entry| entry.value["expires_at"].as_i64())
                .is_none_or(|at| at < now);
            if expired && storage.delete(&key, Expect::Any).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_whatever_their_port_others_exactly() {
        let allowed = vec![
            "http://localhost:8250/oidc/callback".to_owned(),
            "https://broker.example/ui/callback".to_owned(),
        ];
        for ok in [
            "http://localhost:8250/oidc/callback",
            "http://localhost:39001/oidc/callback",
            "http://localhost/oidc/callback",
            "https://broker.example/ui/callback",
        ] {
            assert!(valid_redirect(ok, &allowed), "{ok}");
        }
        for bad in [
            "http://localhost:8250/other",
            "https://localhost:8250/oidc/callback",
            "http://127.0.0.1:8250/oidc/callback",
            "https://broker.example:444/ui/callback",
            "https://broker.example/ui/callback?x=1",
            "https://evil.example/ui/callback",
            "not a uri",
        ] {
            assert!(!valid_redirect(bad, &allowed), "{bad}");
        }
    }

    fn mount(path: &str) -> MountRecord {
        MountRecord {
            id: crate::MountId::random(),
            tenant: crate::TenantId::ROOT,
            path: path.to_owned(),
            kind: "jwt".to_owned(),
            description: String::new(),
            config: serde_json::json!({}),
            created_at: 0,
        }
    }

    fn pending(expires_at: i64) -> Pending {
        Pending {
            role: "people".to_owned(),
            redirect_uri: "http://localhost:8250/oidc/callback".to_owned(),
            nonce: random_text(20),
            verifier: random_text(32),
            client_nonce: Some(sha256_hex("cli")),
            expires_at,
        }
    }

    #[test]
    fn a_state_opens_only_on_its_mount_unchanged_and_before_it_expires() {
        let sealer = RootKey::new(Zeroizing::new([9; 32]));
        let (one, two) = (mount("auth/oidc/"), mount("auth/other/"));
        let state = seal_state(&sealer, &one, &pending(1_000)).unwrap();
        let opened = open_state(&sealer, &one, &state, 1_000).unwrap();
        assert_eq!(opened.role, "people");
        // The verifier and nonce travel sealed: not in the state's text.
        assert!(!state.contains(&opened.verifier) && !state.contains(&opened.nonce));
        assert_eq!(
            open_state(&sealer, &one, &state, 1_001).err(),
            Some("the state expired")
        );
        assert!(
            open_state(&sealer, &two, &state, 0).is_err(),
            "another mount"
        );
        let other_key = RootKey::new(Zeroizing::new([8; 32]));
        assert!(
            open_state(&other_key, &one, &state, 0).is_err(),
            "another broker"
        );
        let mut tampered = state.clone().into_bytes();
        let middle = tampered.len() / 2;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(open_state(&sealer, &one, &tampered, 0).is_err(), "tampered");
        for junk in ["", "!!", &"A".repeat(MAX_STATE_LEN + 1)] {
            assert!(open_state(&sealer, &one, junk, 0).is_err(), "{junk:.10}");
        }
    }

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
