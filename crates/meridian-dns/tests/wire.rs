//! The server on real sockets: truncation and TCP fallback, and malformed packets that
//! must neither crash nor stall it.

mod common;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const BIG: &str = "[[dns.record]]\nname = \"big\"\ntype = \"TXT\"\nvalues = [\"a\", \"b\"]\n";

async fn start() -> SocketAddr {
    start_with_admin().await.0
}

/// Starts a server and returns its DNS and admin addresses.
async fn start_with_admin() -> (SocketAddr, SocketAddr) {
    let big_values: Vec<String> = (0..8)
        .map(|i| format!("\"{}\"", char::from(b'a' + i).to_string().repeat(200)))
        .collect();
    let extra = BIG.replace("[\"a\", \"b\"]", &format!("[{}]", big_values.join(", ")));
    let cfg = config(&extra);
    // Free ports are found by binding and letting go, so another test may take one in
    // between: try again with new ports when binding fails.
    let mut last_error = String::new();
    for _ in 0..5 {
        let mut opts = options(&cfg);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        opts.listen = format!("127.0.0.1:{port}").parse().unwrap();
        opts.admin = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, admin) = (opts.listen, opts.admin);
        let task = tokio::spawn(meridian_dns::run(opts, std::future::pending()));
        for _ in 0..500 {
            if task.is_finished() {
                break;
            }
            if TcpStream::connect(addr).await.is_ok() {
                return (addr, admin);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if task.is_finished() {
            last_error = format!("{:?}", task.await);
        }
    }
    panic!("dns did not start: {last_error}");
}

async fn udp(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(Duration::from_millis(300), s.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

async fn tcp(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn big_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let addr = start().await;
    let q = query("big.t.example.", RecordType::TXT).to_vec().unwrap();
    let r = Message::from_vec(&udp(addr, &q).await.unwrap()).unwrap();
    assert!(
        r.metadata.truncation,
        "a 1.6 KB answer does not fit 512 bytes"
    );
    assert!(r.answers.is_empty());
    let r = Message::from_vec(&tcp(addr, &q).await).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 8);
    // With EDNS and a 4096-byte buffer the answer is capped at 1232 bytes: still truncated.
    let q = with_ecs(query("big.t.example.", RecordType::TXT), "127.77.200.0", 24)
        .to_vec()
        .unwrap();
    let raw = udp(addr, &q).await.unwrap();
    assert!(raw.len() <= 1232);
    assert!(Message::from_vec(&raw).unwrap().metadata.truncation);
    // Small answers are not truncated.
    let q = query("s.t.example.", RecordType::A).to_vec().unwrap();
    let r = Message::from_vec(&udp(addr, &q).await.unwrap()).unwrap();
    assert!(!r.metadata.truncation);
    assert_eq!(r.answers.len(), 2);
}

#[tokio::test]
async fn malformed_packets_never_stop_the_server() {
    let addr = start().await;
    // Too short for a header: dropped.
    assert!(udp(addr, &[1, 2, 3, 4, 5]).await.is_none());
    // A name that points at itself (compression loop).
    let mut looped = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    let r = Message::from_vec(&udp(addr, &looped).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(r.metadata.id, 0xabcd);
    // Absurd counts with no data behind them.
    let absurd = [
        0x12, 0x34, 0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    let r = Message::from_vec(&udp(addr, &absurd).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // A response is never answered (no reflection loops).
    let mut resp = query("s.t.example.", RecordType::A).to_vec().unwrap();
    resp[2] |= 0x80;
    assert!(udp(addr, &resp).await.is_none());
    // Two questions: FORMERR.
    let mut two = query("s.t.example.", RecordType::A);
    two.add_query(hickory_proto::op::Query::query(
        "w.t.example.".parse().unwrap(),
        RecordType::A,
    ));
    let r = Message::from_vec(&udp(addr, &two.to_vec().unwrap()).await.unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    // A TCP peer that sends half a message and goes away.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 40, 1, 2, 3]).await.unwrap();
    drop(s);
    // Still serving, on both transports.
    let q = query("s.t.example.", RecordType::A).to_vec().unwrap();
    assert!(udp(addr, &q).await.is_some());
    assert!(!tcp(addr, &q).await.is_empty());
}

/// Mutated and random packets straight into the handler: nothing may panic. The fuzz
/// target in fuzz/ does the same with coverage guidance.
#[test]
fn random_and_mutated_packets_are_handled() {
    let dns = server("");
    let seed = query("api.t.example.", RecordType::A);
    let seed = with_ecs(seed, "127.77.201.0", 24).to_vec().unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut answered = 0;
    // Bounded: 30,000 packets.
    for i in 0..30_000 {
        let mut p = if i % 3 == 0 {
            (0..(next() % 80) as usize)
                .map(|_| next() as u8)
                .collect::<Vec<u8>>()
        } else {
            seed.clone()
        };
        if !p.is_empty() {
            for _ in 0..(1 + next() % 6) {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
        }
        if dns
            .handle(&p, "127.77.201.9".parse().unwrap(), true)
            .is_some()
        {
            answered += 1;
        }
    }
    assert!(
        answered > 10_000,
        "most mutated queries still get an answer ({answered})"
    );
}

/// Many queries at once land in one receive batch: each gets its own answer (its ID and
/// name case), and the metrics count and time every one, the cached ones included.
#[tokio::test]
async fn a_burst_of_queries_is_answered_counted_and_timed() {
    let (addr, admin) = start_with_admin().await;
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    const N: u16 = 200;
    for id in 0..N {
        let mut m = query("s.t.example.", RecordType::A);
        m.metadata.id = id;
        let mut bytes = m.to_vec().unwrap();
        if id % 2 == 1 {
            // Upper case on the wire (label lengths are below 64, so never letters).
            bytes[12..25].make_ascii_uppercase();
        }
        s.send_to(&bytes, addr).await.unwrap();
    }
    let mut seen = vec![false; usize::from(N)];
    let mut buf = vec![0u8; 2048];
    for _ in 0..N {
        let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
            .await
            .expect("every query is answered")
            .unwrap();
        let r = Message::from_vec(&buf[..n]).unwrap();
        let id = r.metadata.id;
        let expected = if id.is_multiple_of(2) {
            "s.t.example."
        } else {
            "S.T.EXAMPLE."
        };
        assert_eq!(r.queries[0].name().to_string(), expected);
        assert_eq!(r.answers.len(), 2, "both values of the simple record");
        assert!(!seen[usize::from(id)], "one answer per query");
        seen[usize::from(id)] = true;
    }
    let fetched = meridian_http::client::call(
        admin,
        http::Method::GET,
        "/metrics",
        None,
        Duration::from_secs(2),
        1 << 20,
    )
    .await
    .unwrap();
    let metrics = String::from_utf8_lossy(&fetched.body);
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert_eq!(
        value(r#"meridian_dns_queries_total{qtype="A",rcode="NOERROR",policy="simple"}"#),
        f64::from(N)
    );
    assert_eq!(
        value("meridian_dns_answer_duration_seconds_count"),
        f64::from(N)
    );
}
