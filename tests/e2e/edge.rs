//! The edge holds against clients that send too much, too slowly, or too often (issue 16):
//! the caller is known before a body is read (an anonymous caller makes the broker hold at
//! most a login's 64 KiB), headers and bodies arrive under deadlines, and connections and
//! requests in flight are bounded. Raw HTTP/1.1 over TCP, so the test decides exactly what
//! is sent and when.

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use crate::support::{Broker, Options};

/// How long a test waits for an answer the broker owes it; far beyond any deadline set
/// below, so only a broker that never answers runs into it.
const PATIENCE: Duration = Duration::from_secs(60);

/// A broker with these `[listener]` settings (besides its address).
fn broker_with(listener: &str) -> Broker {
    Broker::start(Options {
        config: Some(format!(
            "state_dir = \"{{state}}\"\n[listener]\naddress = \"127.0.0.1:{{port}}\"\n{listener}\n"
        )),
        ..Options::default()
    })
}

/// A connection to the broker whose reads give up after [`PATIENCE`].
fn connect(broker: &Broker) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", broker.port)).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// A request head (no body) with these extra header lines.
fn head(method: &str, path: &str, headers: &[String]) -> String {
    let mut text = format!("{method} /v1/{path} HTTP/1.1\r\nHost: broker\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// Reads one response head and its `Content-Length` body; returns (status, head and body).
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => received.push(byte[0]),
            Ok(_) => panic!(
                "connection closed before a response: {:?}",
                String::from_utf8_lossy(&received)
            ),
            Err(error) => panic!(
                "no response ({error}) after {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    let head = String::from_utf8_lossy(&received).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, format!("{head}{}", String::from_utf8_lossy(&body)))
}

/// Whether the broker closed `stream` (end of stream or reset) before [`PATIENCE`].
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The broker's peak resident memory, in KiB (`VmHWM`).
fn peak_memory_kib(broker: &Broker) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_caller_is_refused_before_its_body_is_read_and_anonymous_bodies_stay_small() {
    let broker = Broker::dev();
    let thirty_mb = 30 * 1024 * 1024;
    // No token, a wrong one, and a token whose policy does not reach the path: each is
    // answered 403 without a byte of the body sent.
    let (status, body) = broker.request(
        "POST",
        "sys/policies/acl/nothing",
        Some(&serde_json::json!({ "policy": "path \"x\" { capabilities = [\"read\"] }" })),
    );
    assert_eq!(status, 204, "{body}");
    let (status, body) = broker.request(
        "POST",
        "auth/token/create",
        Some(&serde_json::json!({ "policies": ["nothing"], "no_default_policy": true })),
    );
    assert_eq!(status, 200, "{body}");
    let narrow = body["auth"]["client_token"].as_str().unwrap().to_owned();
    for token in [None, Some("kbs.not-a-token"), Some(narrow.as_str())] {
        let mut headers = vec![format!("Content-Length: {thirty_mb}")];
        if let Some(token) = token {
            headers.push(format!("X-Vault-Token: {token}"));
        }
        let mut stream = connect(&broker);
        stream
            .write_all(head("POST", "transit/keys/k", &headers).as_bytes())
            .unwrap();
        let (status, text) = read_response(&mut stream);
        assert_eq!(status, 403, "token {token:?}: {text}");
    }

    // A login's body is capped at 64 KiB (a streamed one too: the router's tests).
    broker.bao_ok(&["auth", "enable", "approle"]);
    let mut stream = connect(&broker);
    let headers = [format!("Content-Length: {}", 65 * 1024)];
    stream
        .write_all(head("POST", "auth/approle/login", &headers).as_bytes())
        .unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("larger than 65536 bytes"), "{text}");

    // Forty anonymous 30 MB uploads (chunked: no length to refuse early) leave the broker
    // as small as it was: each is refused on its head, and what follows is never held (it
    // reached 1.08 GB before). The answer is read before the body is sent: the broker
    // closes a refused connection, and a reset could discard an answer not yet read.
    for _ in 0..40 {
        let mut stream = connect(&broker);
        let headers = ["Transfer-Encoding: chunked".to_owned()];
        stream
            .write_all(head("POST", "transit/encrypt/k", &headers).as_bytes())
            .unwrap();
        let (status, text) = read_response(&mut stream);
        assert_eq!(status, 403, "{text}");
        let chunk = vec![b'A'; 1024 * 1024];
        for _ in 0..30 {
            let sent = stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| stream.write_all(&chunk))
                .and_then(|()| stream.write_all(b"\r\n"));
            if sent.is_err() {
                break;
            }
        }
    }
    let peak = peak_memory_kib(&broker);
    assert!(
        peak < 256 * 1024,
        "the broker's peak memory reached {peak} KiB"
    );
}

#[test]
fn headers_and_bodies_arrive_under_deadlines() {
    let broker = broker_with("http_read_header_timeout = \"1s\"\nhttp_read_timeout = \"1s\"");
    // Half a request head: the broker closes the connection at its header deadline.
    let started = Instant::now();
    let mut stream = connect(&broker);
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: broker\r\n")
        .unwrap();
    assert!(
        closed_by_broker(&mut stream),
        "a half-sent head was kept open for {:?}",
        started.elapsed()
    );
    // Nothing at all, too little to tell the protocol, and an HTTP/2 connection that opens
    // and sends no request: each is closed at the deadline of a first request.
    let h2_preface_and_settings: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";
    for sent in [&b""[..], b"GE", h2_preface_and_settings] {
        let started = Instant::now();
        let mut stream = connect(&broker);
        stream.write_all(sent).unwrap();
        assert!(
            closed_by_broker(&mut stream),
            "a connection that sent {sent:?} was kept open for {:?}",
            started.elapsed()
        );
    }
    // Half a body, from a caller allowed to send it: 408 at the body deadline.
    let mut stream = connect(&broker);
    let headers = [
        format!("X-Vault-Token: {}", broker.token),
        "Content-Length: 100".to_owned(),
    ];
    stream
        .write_all(head("POST", "transit/keys/slow", &headers).as_bytes())
        .unwrap();
    stream.write_all(b"{\"type\":").unwrap();
    let (status, text) = read_response(&mut stream);
    assert_eq!(status, 408, "{text}");
    assert!(
        text.contains("timed out reading the request body"),
        "{text}"
    );
    // The broker serves on.
    let (status, body) = broker.request("GET", "sys/health", None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn requests_in_flight_and_connections_are_bounded() {
    let broker = broker_with("max_in_flight_requests = 1\nmax_connections = 3");
    // One request in flight: it has been let in (the broker asked for its body with
    // `100 Continue`), and its body is held back.
    let mut first = connect(&broker);
    let body = br#"{"type":"aes256-gcm96"}"#;
    let headers = [
        format!("X-Vault-Token: {}", broker.token),
        format!("Content-Length: {}", body.len()),
        "Expect: 100-continue".to_owned(),
    ];
    first
        .write_all(head("POST", "transit/keys/held", &headers).as_bytes())
        .unwrap();
    let (status, text) = read_response(&mut first);
    assert_eq!(status, 100, "{text}");
    // Another request meanwhile is refused at once.
    let mut second = connect(&broker);
    let token = [format!("X-Vault-Token: {}", broker.token)];
    second
        .write_all(head("GET", "transit/keys", &token).as_bytes())
        .unwrap();
    let (status, text) = read_response(&mut second);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("too many requests in flight"), "{text}");
    // Once the first is done, the next one is served.
    first.write_all(body).unwrap();
    let (status, text) = read_response(&mut first);
    assert_eq!(status, 200, "{text}");
    second
        .write_all(head("GET", "transit/keys/held", &token).as_bytes())
        .unwrap();
    let (status, text) = read_response(&mut second);
    assert_eq!(status, 200, "{text}");

    // Three connections are open (first, second, third); a fourth waits to be accepted, and
    // is served as soon as one of the three closes.
    let mut third = connect(&broker);
    third
        .write_all(head("GET", "sys/health", &[]).as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut third).0, 200);
    let mut fourth = connect(&broker);
    fourth
        .write_all(head("GET", "sys/health", &[]).as_bytes())
        .unwrap();
    // A correct broker never answers it while the three stay open, so this short wait
    // cannot fail because the machine is slow; an unbounded one answers within it.
    fourth
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut probe = [0u8; 1];
    let early = fourth.read(&mut probe);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "a fourth connection was served beyond max_connections = 3: {early:?}"
    );
    fourth.set_read_timeout(Some(PATIENCE)).unwrap();
    drop(third);
    let (status, text) = read_response(&mut fourth);
    assert_eq!(status, 200, "{text}");
}
