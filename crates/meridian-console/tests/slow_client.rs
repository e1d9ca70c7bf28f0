//! The console's listener cuts off a client that trickles its request head (slowloris),
//! and still serves and stops as before.

use meridian_config::Config;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = r#"
[deployment]
name = "slow"
zone = "slow.example"

[network]
subnet = "127.94.0.0/16"

[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a"]
"#;

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off() {
    let config = Config::parse(CONFIG, "slow-client.toml").expect("valid config");
    let console = config.console_address();
    let server = meridian_http::ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(meridian_console::run_with(config, console, server, async {
        let _ = stop_rx.await;
    }));
    let mut connected = None;
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(console).await {
            connected = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut s = connected.expect("the console listens");
    // A head without its final empty line, then silence.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: console\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(
        closed.is_ok(),
        "the console kept a connection whose head never ended"
    );

    // A whole request is still answered.
    let mut s = TcpStream::connect(console).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: console\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut res = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut res))
        .await
        .expect("answered")
        .unwrap();
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), node)
        .await
        .expect("the console stops when asked")
        .unwrap()
        .unwrap();
}
