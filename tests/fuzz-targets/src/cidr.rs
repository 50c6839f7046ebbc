//! CIDR lists (`broker/core/src/cidr.rs`): role and secret-id `bound_cidrs`, token bound
//! CIDRs, `trusted_proxies`. One entry per line of the input.

use std::net::IpAddr;

use keybroker_core::cidr;

/// Parses every line of `data` as a CIDR block and checks the list operations.
pub fn cidr(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let entries: Vec<String> = text.lines().map(str::to_owned).collect();
    for entry in &entries {
        if let Ok(net) = cidr::parse(entry) {
            // The canonical text parses back to the same block.
            assert_eq!(cidr::parse(&net.to_string()).ok(), Some(net), "{entry:?}");
        }
    }
    match cidr::canonical_list(&entries) {
        Ok(canonical) => {
            assert_eq!(
                cidr::canonical_list(&canonical).ok(),
                Some(canonical.clone())
            );
            // Every list lies within itself.
            assert_eq!(cidr::is_subset(&canonical, &canonical).ok(), Some(true));
            for address in [
                "10.1.2.3",
                "192.0.2.7",
                "::1",
                "2001:db8::1",
                "::ffff:10.1.2.3",
            ] {
                let address: IpAddr = address.parse().unwrap();
                let expected = canonical.iter().any(|entry| {
                    cidr::parse(entry)
                        .unwrap()
                        .contains(&cidr::canonical_address(address))
                });
                assert_eq!(cidr::contains_any(&canonical, address), expected);
            }
        }
        // Some entry is not a block: every check of the list refuses it.
        Err(_) => assert!(cidr::is_subset(&entries, &["10.0.0.0/8".to_owned()]).is_err()),
    }
}
