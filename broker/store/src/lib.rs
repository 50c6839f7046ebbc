//! keybroker's storage adapters over sqlx.
//!
//! [`SqliteStore`] is the embedded default: one file, WAL journal, `synchronous=FULL`, so a
//! write acknowledged to a client survives a crash. [`PostgresStore`] serves a cluster: any
//! number of nodes share one PostgreSQL database; writes announce cache invalidations with
//! LISTEN/NOTIFY in their own transaction, and periodic jobs take advisory locks. Both
//! implement the same `Store` trait, and one conformance suite checks both. The Rust they
//! share is written once (`shared/`: the `Store` impl, with each engine's own SQL; `rows.rs`:
//! decoding); each engine keeps its transactions, locks and announcements. Migrations are
//! embedded per engine (`migrations/sqlite`, `migrations/postgres`).
//!
//! The Postgres tests start a real, throwaway PostgreSQL server (`keybroker-pg-harness`):
//! `cargo test -p keybroker-store` needs the server programs installed (`tests/run`
//! installs them).
//!
//! Each engine is a feature of this crate, both on by default: `sqlite`, `postgres`.

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("keybroker-store needs an engine: enable the feature `sqlite` or `postgres`");

#[cfg(test)]
mod conformance;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod shared;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// The least string above every string starting with `prefix`, in byte order (which is
/// code point order for UTF-8: both engines compare keys so), or `None` when no string is
/// (`prefix` empty, or only U+10FFFF). Listing a prefix is then a range scan of the key
/// index, `prefix <= key < end`, with no pattern to escape.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match u32::from(last) + 1 {
            0xD800 => Some('\u{E000}'),
            code => char::from_u32(code),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_range_ends_at_the_next_code_point() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("role/").as_deref(), Some("role0"));
        assert_eq!(prefix_end("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
        // Every string starting with the prefix sorts below the end, bytewise.
        let end = prefix_end("ab\u{7F}").unwrap();
        for key in ["ab\u{7F}", "ab\u{7F}\u{10FFFF}", "ab\u{7F}zzz"] {
            assert!(key.as_bytes() < end.as_bytes(), "{key:?}");
        }
        assert!("ab\u{80}".as_bytes() >= end.as_bytes());
    }
}
