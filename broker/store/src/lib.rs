//! keybroker's storage adapters over sqlx.
//!
//! [`SqliteStore`] is the embedded default: one file, WAL journal, `synchronous=FULL`, so a
//! write acknowledged to a client survives a crash. [`PostgresStore`] serves a cluster: any
//! number of nodes share one PostgreSQL database; writes announce cache invalidations with
//! LISTEN/NOTIFY in their own transaction, and periodic jobs take advisory locks. Both
//! implement the same `Store` trait, and one conformance suite checks both. Migrations are
//! embedded per engine (`migrations/sqlite`, `migrations/postgres`).
//!
//! The Postgres tests start a real, throwaway PostgreSQL server (`keybroker-pg-harness`):
//! `cargo test -p keybroker-store` needs the server programs installed (`tests/run`
//! installs them).

#[cfg(test)]
mod conformance;
mod postgres;
mod rows;
mod sqlite;

pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;
