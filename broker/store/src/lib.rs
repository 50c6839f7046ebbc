//! keybroker's storage adapters over sqlx.
//!
//! [`SqliteStore`] is the embedded default: one file, WAL journal, `synchronous=FULL`, so a
//! write acknowledged to a client survives a crash. Migrations are embedded per engine
//! (`migrations/sqlite`). A Postgres adapter implements the same `Store` trait later.

#[cfg(test)]
mod conformance;
mod sqlite;

pub use sqlite::SqliteStore;
