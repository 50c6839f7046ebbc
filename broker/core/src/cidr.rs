//! CIDR blocks (ipnet): parsing the lists operators write (`10.0.0.0/8`, or a bare address
//! meaning that one host), and matching client addresses against them.
//!
//! Lists are stored as text and parsed where they are checked; an entry that no longer
//! parses matches nothing, so a damaged list fails closed.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::{Error, Result};

/// Parses a CIDR block, or a bare address as a block of one host.
pub fn parse(text: &str) -> Result<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net);
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| Error::invalid(format!("invalid CIDR block {text:?}")))
}

/// Parses every entry of a list.
pub fn parse_list(list: &[String]) -> Result<Vec<IpNet>> {
    list.iter().map(|entry| parse(entry)).collect()
}

/// Checks a list and returns it in canonical text form (`10.0.0.0/8`, `192.0.2.7/32`).
pub fn canonical_list(list: &[String]) -> Result<Vec<String>> {
    Ok(parse_list(list)?
        .into_iter()
        .map(|net| net.to_string())
        .collect())
}

/// An address as compared: IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack
/// socket reports for an IPv4 peer) are their IPv4 address.
pub fn canonical_address(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

/// Whether `address` lies in any block of `list`.
pub fn contains_any(list: &[String], address: IpAddr) -> bool {
    let address = canonical_address(address);
    list.iter()
        .filter_map(|entry| parse(entry).ok())
        .any(|net| net.contains(&address))
}

/// Whether every block of `inner` lies inside some block of `outer`; an empty `outer`
/// allows anything.
pub fn is_subset(inner: &[String], outer: &[String]) -> Result<bool> {
    if outer.is_empty() {
        return Ok(true);
    }
    let outer = parse_list(outer)?;
    Ok(parse_list(inner)?
        .iter()
        .all(|net| outer.iter().any(|o| o.contains(net))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn blocks_and_bare_addresses() {
        assert_eq!(parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse(" 192.0.2.7 ").unwrap().to_string(), "192.0.2.7/32");
        assert_eq!(parse("::1").unwrap().to_string(), "::1/128");
        for bad in ["", "10.0.0.0/33", "example.com", "10.0.0.0/8/1", "1.2.3"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn membership_fails_closed() {
        let blocks = list(&["10.0.0.0/8", "not a block"]);
        assert!(contains_any(&blocks, "10.1.2.3".parse().unwrap()));
        assert!(contains_any(&blocks, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!contains_any(&blocks, "127.0.0.1".parse().unwrap()));
        assert!(!contains_any(&[], "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn subsets() {
        let outer = list(&["10.0.0.0/8"]);
        assert!(is_subset(&list(&["10.1.0.0/16", "10.2.3.4"]), &outer).unwrap());
        assert!(!is_subset(&list(&["10.0.0.0/7"]), &outer).unwrap());
        assert!(!is_subset(&list(&["192.168.0.0/16"]), &outer).unwrap());
        assert!(is_subset(&list(&["0.0.0.0/0"]), &[]).unwrap());
        assert!(is_subset(&list(&["bad"]), &outer).is_err());
    }
}
