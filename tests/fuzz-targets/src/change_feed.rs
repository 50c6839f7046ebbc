//! The change feed (`broker/core/src/changes.rs`): lines another node announces through the
//! shared store. Whatever decodes re-encodes to a line that decodes the same.

use keybroker_core::changes::Change;

/// Decodes `data` as a change-feed line.
pub fn change_feed(data: &[u8]) {
    let Some(line) = crate::text(data) else {
        return;
    };
    if let Some(change) = Change::decode(line) {
        let encoded = change.encode();
        assert_eq!(Change::decode(&encoded), Some(change), "{encoded:?}");
    }
}
