//! What a mount is, and the registry of every kind the API serves.
//!
//! Vault's `logical.Backend` is the model: a kind names itself, lists its routes (which say
//! the paths that need no token), names the paths that also need `sudo` (Vault's
//! `PathsSpecial.Root`), answers the existence check that tells a create from an update,
//! serves requests, and drops its caches when a change says they are stale. The registry is
//! built once at start-up; the dispatcher, the login paths, the `sudo` check, the mount table
//! (which types may be enabled) and the authority matrix all read it. Adding an engine or an
//! auth method is one implementation of [`MountKind`] and one line in
//! [`Registry::standard`]: no edit to the dispatcher.
//!
//! `sys/` and `auth/token/` are kinds too, built in at fixed paths (as in Vault, where they
//! are the system and token backends).

use std::{net::IpAddr, sync::Arc};

use async_trait::async_trait;
use axum::{http::HeaderMap, response::Response};
use keybroker_core::{
    auth::token::Caller,
    changes::Change,
    mounts::{MountKinds, Tuning},
    store::MountRecord,
    Tenant,
};

use super::{
    error::ApiError,
    routes::{self, Base, Refusal, Route},
    ApiRequest, AppState, Operation, Ready,
};
use crate::audit::{AuditAuth, AuditSink};

/// A request's metric label and its answer.
pub type Handled = (&'static str, Result<Response, ApiError>);

/// Whether a kind is mounted by `sys/mounts` (an engine), by `sys/auth` (an auth method), or
/// is always there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A secrets engine (`bao secrets enable`), mounted at a path of its own.
    Engine,
    /// An auth method (`bao auth enable`), mounted below `auth/`.
    Auth,
    /// Built in at a fixed path (`sys/`, `auth/token/`); never in the mount table.
    Builtin,
}

/// An authenticated, authorised request, handed to its kind.
pub struct Call<'a> {
    /// The server's state (metrics, audit).
    pub state: &'a AppState,
    /// The unsealed broker.
    pub ready: &'a Ready,
    /// Who calls.
    pub caller: &'a Caller,
    /// The tenant the request is for.
    pub tenant: &'a Tenant,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The mount (none for a built-in kind).
    pub mount: Option<&'a MountRecord>,
    /// The path below the mount (a built-in kind: below the API's root).
    pub rest: &'a str,
    /// The request.
    pub request: &'a ApiRequest,
}

/// An unauthenticated request on one of a kind's anonymous routes (a login).
pub struct Login<'a> {
    /// The unsealed broker.
    pub ready: &'a Ready,
    /// The auth mount.
    pub mount: &'a MountRecord,
    /// The request.
    pub request: &'a ApiRequest,
    /// The client's address.
    pub client: Option<IpAddr>,
}

/// What the audit log records of a login: what was found of the caller, and the token
/// issued — as HMACs, through [`AuditAuth`]; never a credential.
#[derive(Default)]
pub struct LoginAudit {
    role_name: Option<String>,
    secret_id_accessor: Option<String>,
    issued: Option<keybroker_core::auth::token::IssuedToken>,
}

impl std::fmt::Debug for LoginAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the issued token.
        f.debug_struct("LoginAudit")
            .field("role_name", &self.role_name)
            .field("secret_id_accessor", &self.secret_id_accessor)
            .field("issued", &self.issued.as_ref().map(|i| &i.record.accessor))
            .finish()
    }
}

impl LoginAudit {
    /// What a login found (the role, the secret_id's accessor) and issued.
    pub fn new(
        role_name: Option<String>,
        secret_id_accessor: Option<String>,
        issued: Option<keybroker_core::auth::token::IssuedToken>,
    ) -> Self {
        Self {
            role_name,
            secret_id_accessor,
            issued,
        }
    }

    /// The identity of a login's response record.
    pub fn audit_auth(&self, sink: &dyn AuditSink) -> AuditAuth {
        let mut auth = AuditAuth::builder(sink);
        if let Some(role) = &self.role_name {
            auth = auth.role(role);
        }
        if let Some(accessor) = &self.secret_id_accessor {
            auth = auth.secret_id_accessor(accessor);
        }
        if let Some(issued) = &self.issued {
            auth = auth
                .client_token(&issued.token)
                .accessor(&issued.record.accessor)
                .policies(issued.record.policies.iter().cloned())
                .display_name(&issued.record.display_name)
                .token_type("service");
        }
        auth.build()
    }
}

/// What a kind of mount is, as data.
#[derive(Debug)]
pub struct Spec {
    /// Its type name, as `sys/mounts` and `sys/auth` take it (`transit`, `approle`).
    pub name: &'static str,
    /// Engine, auth method, or built in.
    pub class: Class,
    /// Every route it serves: patterns below each of its mounts (a built-in kind: below the
    /// API's root), with their verbs and whether they need a token.
    pub routes: &'static [Route],
    /// Paths below the mount whose rule must also grant `sudo` (Vault's root-protected
    /// paths): `p` is `p` and every path below it; `p*` is every path starting with `p`.
    pub sudo_paths: &'static [&'static str],
}

/// One kind of mount.
#[async_trait]
pub trait MountKind: Send + Sync + 'static {
    /// What it is: name, class, routes, `sudo` paths.
    fn spec(&self) -> &'static Spec;

    /// Its type name.
    fn name(&self) -> &'static str {
        self.spec().name
    }

    /// Engine, auth method, or built in.
    fn class(&self) -> Class {
        self.spec().class
    }

    /// Every route it serves.
    fn routes(&self) -> &'static [Route] {
        self.spec().routes
    }

    /// Its `sudo` paths.
    fn sudo_paths(&self) -> &'static [&'static str] {
        self.spec().sudo_paths
    }

    /// Vault's existence check: whether a write to `rest` below `mount` creates something
    /// (the policy must then grant `create` rather than `update`).
    async fn creates(
        &self,
        _ready: &Ready,
        _tenant: &Tenant,
        _mount: &MountRecord,
        _rest: &str,
    ) -> bool {
        false
    }

    /// Serves an authenticated, authorised request on one of its routes.
    async fn handle(&self, call: Call<'_>) -> Handled;

    /// Serves a request on one of its anonymous routes (a login), with what the audit log
    /// records of it.
    async fn login(&self, _login: Login<'_>) -> (Handled, LoginAudit) {
        (
            ("unknown", Err(ApiError::UnsupportedPath)),
            LoginAudit::default(),
        )
    }

    /// Checks the options an enable or a tune gives one of its mounts, and applies what they
    /// change of the kind's own state, before the tuning is kept. `before` is `None` at
    /// enable, right after the mount was made (a refusal unmounts it again).
    async fn configure(
        &self,
        _ready: &Ready,
        _tenant: &Tenant,
        _mount: &MountRecord,
        _before: Option<&Tuning>,
        _after: &Tuning,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Drops what a change (from this node or another) makes stale in this kind's caches.
    /// Called after the core has applied the change (mount tables are current).
    async fn invalidate(&self, _ready: &Ready, _change: &Change) {}
}

/// The answer to a call for a mounted kind that came without its mount (the dispatcher
/// never sends one).
pub fn unmounted() -> Handled {
    ("unknown", Err(ApiError::UnsupportedPath))
}

/// Where a path lands: its kind and its mount (none for a built-in kind).
pub struct Target<'r> {
    /// The kind.
    pub kind: &'r dyn MountKind,
    /// The mount.
    pub mount: Option<Arc<MountRecord>>,
    /// The metric label of a request the route list refuses.
    label: &'static str,
}

/// Every kind the API serves, in the order registered; built once at start-up.
pub struct Registry {
    kinds: Vec<Arc<dyn MountKind>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.kinds().map(|kind| kind.name()))
            .finish()
    }
}

/// The built-in prefixes, longest first: the kind each belongs to, and its metric label.
const BUILTIN_PREFIXES: &[(&str, &str, &str)] = &[
    ("auth/token/", super::token::KIND, "auth/token"),
    ("sys/", super::sys::KIND, "sys"),
];

impl Registry {
    /// The kinds keybroker ships: `sys`, `token`, `approle`, `jwt`, `transit`, `kv`.
    pub fn standard() -> Self {
        Self::empty()
            .with(super::sys::System)
            .with(super::token::TokenStore)
            .with(super::approle::AppRole)
            .with(super::jwt::Jwt)
            .with(super::transit::TransitEngine)
            .with(super::kv::KvEngine)
    }

    /// No kind at all.
    pub fn empty() -> Self {
        Self { kinds: Vec::new() }
    }

    /// This registry with `kind` added (replacing a kind of the same name).
    pub fn with(mut self, kind: impl MountKind) -> Self {
        self.kinds.retain(|known| known.name() != kind.name());
        self.kinds.push(Arc::new(kind));
        self
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<&dyn MountKind> {
        self.kinds().find(|kind| kind.name() == name)
    }

    /// Every kind, in the order registered.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn MountKind> {
        self.kinds.iter().map(|kind| kind.as_ref())
    }

    /// Every route of every kind, with where it starts.
    pub fn routes(&self) -> impl Iterator<Item = (Base, &'static Route)> + '_ {
        self.kinds().flat_map(|kind| {
            let base = match kind.class() {
                Class::Builtin => Base::Root,
                Class::Engine | Class::Auth => Base::Mount(kind.name()),
            };
            kind.routes().iter().map(move |route| (base, route))
        })
    }

    /// The types the mount table may enable: engines and auth methods.
    pub fn mount_kinds(&self) -> MountKinds {
        let of = |class| {
            self.kinds()
                .filter(|kind| kind.class() == class)
                .map(|kind| kind.name().to_owned())
                .collect()
        };
        MountKinds::new(of(Class::Engine), of(Class::Auth))
    }

    /// Where `path` (tenant-relative) lands: a built-in kind by prefix, else the mount
    /// serving it. `None` when nothing serves it (or its mount's kind is unknown).
    pub async fn resolve(
        &self,
        ready: &Ready,
        tenant: &Tenant,
        path: &str,
    ) -> Result<Option<Target<'_>>, ApiError> {
        for (prefix, name, label) in BUILTIN_PREFIXES {
            if path.starts_with(prefix) {
                return Ok(self.get(name).map(|kind| Target {
                    kind,
                    mount: None,
                    label,
                }));
            }
        }
        let Some((mount, _)) = ready.broker.mounts.resolve(tenant.id, path).await? else {
            return Ok(None);
        };
        Ok(self.get(&mount.kind).map(|kind| Target {
            kind,
            mount: Some(mount),
            label: "mounts",
        }))
    }

    /// Tells every kind of a change, once the core has applied it.
    pub async fn invalidate(&self, ready: &Ready, change: &Change) {
        for kind in self.kinds() {
            kind.invalidate(ready, change).await;
        }
    }
}

/// Whether `rest` is one of `sudo_paths` ([`Spec::sudo_paths`]).
pub fn is_sudo_path(sudo_paths: &[&str], rest: &str) -> bool {
    let bare = rest.trim_end_matches('/');
    sudo_paths.iter().any(|path| match path.strip_suffix('*') {
        Some(prefix) => bare.starts_with(prefix),
        None => {
            bare == *path
                || bare
                    .strip_prefix(path)
                    .is_some_and(|below| below.starts_with('/'))
        }
    })
}

impl Target<'_> {
    /// The part of `path` (the path this target was resolved from) below the mount; a
    /// built-in kind's paths start at the API's root.
    pub fn rest<'p>(&self, path: &'p str) -> &'p str {
        match &self.mount {
            Some(mount) => path.get(mount.path.len()..).unwrap_or_default(),
            None => path,
        }
    }

    /// The answer when the kind's route list does not serve `operation` on `rest` (404 for
    /// an unknown path, 405 for a known path with another verb), with its metric label;
    /// `None` when it does.
    pub fn refusal(&self, rest: &str, operation: Operation) -> Option<Handled> {
        let refusal = routes::find(self.kind.routes(), rest, operation).err()?;
        let error = match refusal {
            Refusal::Path => ApiError::UnsupportedPath,
            Refusal::Operation => ApiError::UnsupportedOperation,
        };
        Some((self.label, Err(error)))
    }

    /// Whether `rest` is one of a mounted kind's anonymous routes (a login), whatever the
    /// verb.
    pub fn is_login(&self, rest: &str) -> bool {
        self.mount.is_some() && routes::is_anonymous(self.kind.routes(), rest)
    }

    /// Whether `rest` is one of the kind's `sudo` paths.
    pub fn needs_sudo(&self, rest: &str) -> bool {
        is_sudo_path(self.kind.sudo_paths(), rest)
    }

    /// Whether a write to `rest` creates something (Vault's existence check).
    pub async fn creates(&self, ready: &Ready, tenant: &Tenant, rest: &str) -> bool {
        match &self.mount {
            Some(mount) => self.kind.creates(ready, tenant, mount, rest).await,
            None => false,
        }
    }
}
