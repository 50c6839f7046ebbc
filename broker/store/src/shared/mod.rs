//! The Rust that the SQLite and PostgreSQL stores share: the `Store` impl, written once.
//!
//! Most methods run the same Rust around different SQL text. [`store_impl!`] writes the
//! whole `impl Store` for one engine from templates, one file per aggregate (`meta`,
//! `tenants`, `policies`, `mounts`, `tokens`, `approle`, `keys`), each holding its methods'
//! bodies with both dialects' SQL side by side ([`sql!`] keeps the engine's own). A method
//! whose transactions, locks or change announcements differ between the engines is only
//! forwarded to the engine's inherent method, in `sqlite/<aggregate>.rs` or
//! `postgres/<aggregate>.rs`.
//!
//! The templates are `macro_rules!`, expanded in the engine's module: the names they use
//! (`map_error`, the row decoders of `rows.rs`, the record types) are that module's. Each
//! aggregate's macro appends its methods and hands them on to the next one; the last,
//! [`finish!`], writes the impl, so that `#[async_trait]` sees every method at once.

pub(crate) mod approle;
pub(crate) mod keys;
pub(crate) mod meta;
pub(crate) mod mounts;
pub(crate) mod policies;
pub(crate) mod tenants;
pub(crate) mod tokens;

/// The SQL text of the engine `$dialect` (`sqlite` or `postgres`) among both.
macro_rules! sql {
    (sqlite, sqlite: $sqlite:expr, postgres: $postgres:expr $(,)?) => {
        $sqlite
    };
    (postgres, sqlite: $sqlite:expr, postgres: $postgres:expr $(,)?) => {
        $postgres
    };
}

/// The statements in braces on PostgreSQL, nothing on SQLite: a change announcement in a
/// method otherwise the same on both.
macro_rules! postgres_only {
    (sqlite, { $($statement:tt)* }) => {};
    (postgres, { $($statement:tt)* }) => {
        $($statement)*
    };
}

/// Writes `impl Store for $store` for the engine `$dialect` (`sqlite` or `postgres`); the
/// items in braces (methods only one engine overrides) come first.
macro_rules! store_impl {
    ($store:ident, $dialect:ident, { $($extra:tt)* }) => {
        $crate::shared::meta::methods! { $store, $dialect, [$($extra)*], [] }
    };
}

/// The last step of [`store_impl!`]: the impl of the accumulated methods, and the free
/// items they use.
macro_rules! finish {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        #[async_trait::async_trait]
        impl Store for $store {
            $($methods)*
        }

        $($items)*
    };
}

pub(crate) use {finish, postgres_only, sql, store_impl};
