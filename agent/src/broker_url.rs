//! The broker's gateway URL (`wss://host[:port][/path]`), split into what the transport
//! needs: where to dial, the name the broker's certificate must carry, and the request URL
//! of the WebSocket handshake.

use std::fmt;

use rustls_pki_types::ServerName;

/// The port of a `wss://` URL that names none.
const DEFAULT_PORT: u16 = 443;

/// A parsed `wss://` URL of the broker's agent gateway.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    host: String,
    port: u16,
    path: String,
    server_name: ServerName<'static>,
}

/// Why a broker URL was refused. The message is the reason alone; the caller names the
/// field or flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

impl UrlError {
    fn new(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

impl BrokerUrl {
    /// Parses `url`. Refused: anything but `wss://` (plain `ws://` in particular), no host,
    /// user info (`user:password@`: the agent authenticates with its key, and a password in
    /// a URL ends up in logs), a bad port, a fragment, whitespace.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let Some(rest) = url.strip_prefix("wss://") else {
            return Err(UrlError::new(if url.starts_with("ws://") {
                "the connection must use TLS: use wss://, not ws://"
            } else {
                "must be a wss:// URL, e.g. wss://broker.example:8201"
            }));
        };
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::new("the URL contains whitespace"));
        }
        if url.contains('#') {
            return Err(UrlError::new(
                "a WebSocket URL has no fragment: remove the '#' part",
            ));
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::new(
                "the URL must not carry a user name or password (user@host)",
            ));
        }
        let (host, port) = split_host_port(authority)?;
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| UrlError::new("the host is neither a DNS name nor an IP address"))?;
        let path = match path {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            path,
            server_name,
        })
    }

    /// The host to dial (a DNS name or an IP address, without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to dial.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path (and query) of the WebSocket handshake request, at least `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The name the broker's certificate must be valid for.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// The URL of the WebSocket handshake request.
    pub fn request_url(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                formatter,
                "wss://[{}]:{}{}",
                self.host, self.port, self.path
            )
        } else {
            write!(formatter, "wss://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "BrokerUrl({self})")
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, u16), UrlError> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(UrlError::new("an IPv6 address must be closed with ']'"));
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(UrlError::new("expected ':port' after ']'")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::new("the URL names no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port != 0 && digits.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(UrlError::new("the port is not a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_path_are_split_out() {
        let url = BrokerUrl::parse("wss://broker.example:8201/agent").unwrap();
        assert_eq!(
            (url.host(), url.port(), url.path()),
            ("broker.example", 8201, "/agent")
        );
        assert!(matches!(url.server_name(), ServerName::DnsName(_)));
        assert_eq!(url.request_url(), "wss://broker.example:8201/agent");

        let url = BrokerUrl::parse("wss://broker.example").unwrap();
        assert_eq!((url.port(), url.path()), (443, "/"));

        let url = BrokerUrl::parse("wss://broker.example:8201?v=1").unwrap();
        assert_eq!(url.path(), "/?v=1");
    }

    #[test]
    fn ip_addresses_are_server_names_too() {
        let url = BrokerUrl::parse("wss://127.0.0.1:8201").unwrap();
        assert_eq!(url.host(), "127.0.0.1");
        assert!(matches!(url.server_name(), ServerName::IpAddress(_)));

        let url = BrokerUrl::parse("wss://[::1]:8201/gw").unwrap();
        assert_eq!((url.host(), url.port()), ("::1", 8201));
        assert!(matches!(url.server_name(), ServerName::IpAddress(_)));
        assert_eq!(url.request_url(), "wss://[::1]:8201/gw");
    }

    #[test]
    fn unusable_urls_are_refused_with_the_reason() {
        let cases = [
            ("ws://broker.example:8201", "use wss://, not ws://"),
            ("https://broker.example", "must be a wss:// URL"),
            ("broker.example:8201", "must be a wss:// URL"),
            ("wss://", "names no host"),
            ("wss://:8201", "names no host"),
            ("wss:///path", "names no host"),
            ("wss://user:pw@broker.example", "user name or password"),
            ("wss://user@broker.example", "user name or password"),
            ("wss://broker.example:0", "the port"),
            ("wss://broker.example:99999", "the port"),
            ("wss://broker.example:+80", "the port"),
            ("wss://broker.example:x", "the port"),
            ("wss://broker example", "whitespace"),
            ("wss://broker.example/#frag", "fragment"),
            ("wss://[::1", "closed with ']'"),
            ("wss://[::1]x", "':port'"),
            ("wss://bad_host!", "neither a DNS name"),
        ];
        for (url, expected) in cases {
            let error = BrokerUrl::parse(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }
}
