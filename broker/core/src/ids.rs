//! Immutable ids. Names can change or be reused; the ids in a ciphertext's binding never do.

use std::fmt;

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }
            /// The 16 raw bytes (used in bindings).
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
            /// Parses the hyphenated text form.
            pub fn parse(text: &str) -> Option<Self> {
                Uuid::parse_str(text).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

id_type!(
    /// A tenant (namespace). The root namespace has the nil id.
    TenantId
);
id_type!(
    /// A transit key, fixed at creation.
    KeyId
);
id_type!(
    /// A mount, fixed at creation.
    MountId
);

impl TenantId {
    /// The root namespace, for operators.
    pub const ROOT: TenantId = TenantId(Uuid::nil());
    /// The name of the root namespace wherever a name is needed (allowlists, logs).
    pub const ROOT_NAME: &'static str = "root";
}

/// A tenant as resolved at the edge: immutable id plus its canonical name (for allowlists
/// and logs). Never re-parsed from strings deeper in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Immutable id.
    pub id: TenantId,
    /// Canonical name (`root` for the root namespace).
    pub name: std::sync::Arc<str>,
}

impl Tenant {
    /// The root namespace.
    pub fn root() -> Self {
        Self {
            id: TenantId::ROOT,
            name: std::sync::Arc::from(TenantId::ROOT_NAME),
        }
    }
}
