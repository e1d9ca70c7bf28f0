//! A DNS node under clients that hold on or reach too far: a cap on TCP connections, a
//! client that never reads its answers loses its connection instead of holding a task
//! forever, and changing the DNS through its admin endpoint needs the admin token.

mod common;
use common::*;
use hickory_proto::rr::RecordType;
use meridian_dns::DnsOptions;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TXT set of about 15 KB: a thousand answers are far more than socket buffers hold.
fn huge() -> String {
    let values: Vec<String> = (0..60)
        .map(|i| format!("\"{}\"", "x".repeat(240 + i % 10)))
        .collect();
    format!(
        "[[dns.record]]\nname = \"huge\"\ntype = \"TXT\"\nvalues = [{}]\n",
        values.join(", ")
    )
}

/// Starts a server with `tune` applied to its options; returns its DNS address (TCP and
/// UDP) and its admin address.
async fn start(tune: impl Fn(&mut DnsOptions)) -> (SocketAddr, SocketAddr) {
    let cfg = config(&huge());
    let mut last_error = String::new();
    for _ in 0..5 {
        let mut opts = options(&cfg);
        tune(&mut opts);
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
        // Waiting for the listener by connecting would take the only slot of a cap of 1,
        // so wait for the UDP side to answer instead.
        let probe = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = query("s.t.example.", RecordType::A).to_vec().unwrap();
        for _ in 0..100 {
            if task.is_finished() {
                break;
            }
            probe.send_to(&q, addr).await.unwrap();
            let mut buf = [0u8; 1500];
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(50), probe.recv(&mut buf)).await
            {
                return (addr, admin);
            }
        }
        if task.is_finished() {
            last_error = format!("{:?}", task.await);
        }
    }
    panic!("dns did not start: {last_error}");
}

fn framed(name: &str, t: RecordType) -> Vec<u8> {
    let q = query(name, t).to_vec().unwrap();
    let mut f = (q.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(&q);
    f
}

async fn read_answer(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

#[tokio::test]
async fn at_the_tcp_cap_a_new_client_waits_until_one_closes() {
    let (addr, _) = start(|o| {
        o.tcp_max_connections = 1;
        o.tcp_timeout = Duration::from_secs(30);
    })
    .await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    a.write_all(&framed("s.t.example.", RecordType::A))
        .await
        .unwrap();
    read_answer(&mut a).await.unwrap();

    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(&framed("s.t.example.", RecordType::A))
        .await
        .unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), read_answer(&mut b)).await;
    assert!(
        early.is_err(),
        "b was answered while a held the only connection"
    );

    drop(a);
    tokio::time::timeout(Duration::from_secs(10), read_answer(&mut b))
        .await
        .expect("b is answered once a has closed")
        .unwrap();
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let (addr, _) = start(|o| o.tcp_timeout = Duration::from_millis(300)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // A thousand questions (the most one connection may ask), about 15 MB of answers.
    let q = framed("huge.t.example.", RecordType::TXT);
    let writer = tokio::spawn(async move {
        for _ in 0..1000 {
            if wr.write_all(&q).await.is_err() {
                break;
            }
        }
        wr
    });
    // Read nothing for far longer than the write timeout.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut answers = 0;
    let mut buf = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(20), async {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let _ = writer.await;
    assert!(
        drained.is_ok(),
        "the connection neither closed nor finished"
    );
    let mut rest = &buf[..];
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + n {
            break;
        }
        answers += 1;
        rest = &rest[2 + n..];
    }
    assert!(
        answers < 1000,
        "all {answers} answers arrived: the server waited for a client that did not read"
    );
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn call(
    admin: SocketAddr,
    method: http::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let f =
        meridian_http::client::call(admin, method, path, token, Duration::from_secs(5), 1 << 20)
            .await
            .unwrap();
    (f.status, String::from_utf8_lossy(&f.body).into_owned())
}

#[tokio::test]
async fn setting_a_measured_latency_needs_the_admin_token() {
    let (_, admin) = start(|o| o.admin_token = Some(TOKEN.into())).await;
    let set = "/latency?client=lon&region=r-us&rtt_ms=3.5";
    for token in [None, Some("wrong"), Some(&TOKEN[1..])] {
        let (status, _) = call(admin, http::Method::POST, set, token).await;
        assert_eq!(status, 401, "POST /latency with {token:?}");
    }
    let (_, measured) = call(admin, http::Method::GET, "/latency", None).await;
    assert!(
        !measured.contains("3.5"),
        "a refused change took effect: {measured}"
    );

    let (status, body) = call(admin, http::Method::POST, set, Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let (_, measured) = call(admin, http::Method::GET, "/latency", None).await;
    assert!(measured.contains("3.5"), "{measured}");

    // Reading stays open to monitoring and to `meridian dns explain`.
    for path in [
        "/metrics",
        "/health",
        "/targets",
        "/explain?name=s.t.example&type=A&client=127.77.201.9",
    ] {
        assert_eq!(
            call(admin, http::Method::GET, path, None).await.0,
            200,
            "{path}"
        );
    }
}

#[tokio::test]
async fn without_a_token_no_change_is_accepted() {
    let (_, admin) = start(|o| o.admin_token = None).await;
    let set = "/latency?client=lon&region=r-us&rtt_ms=3.5";
    assert_eq!(call(admin, http::Method::POST, set, None).await.0, 401);
    assert_eq!(call(admin, http::Method::POST, set, Some("")).await.0, 401);
}
