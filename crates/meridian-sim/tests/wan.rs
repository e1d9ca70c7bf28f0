//! The `wan` node as a whole: a cap on the connections it relays, and admin endpoints
//! that change the network only for the deployment's token.

use meridian_config::{Config, Role};
use meridian_sim::wan::WanOptions;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One region behind the WAN, its balancer's public port relayed to an echo server.
const CONFIG: &str = r#"
[deployment]
name = "wan-test"
zone = "wan.test"
[network]
subnet = "SUBNET"
lb_port = 7100
admin_port = 7900
[[region]]
name = "r1"
primary = true
location = { lat = 0, lon = 0 }
azs = ["r1a"]
[dns]
servers = 0
[simulation]
wan = true
[[client_location]]
name = "here"
location = { lat = 0, lon = 0 }
"#;

struct Wan {
    /// Where clients connect (the balancer's public address).
    public: SocketAddr,
    admin: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A WAN node for the deployment in `subnet` (one per test, so tests run side by side).
async fn start(subnet: &str, tune: impl FnOnce(&mut WanOptions)) -> Wan {
    let cfg =
        Config::parse(&CONFIG.replace("SUBNET", subnet), "wan-test.toml").expect("valid config");
    let public = cfg.lb_address("r1").unwrap();
    let backstage = meridian_config::Placement::BehindRelay.listen(public);
    let echo = TcpListener::bind(backstage).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let admin = cfg
        .nodes()
        .into_iter()
        .find(|n| n.role == Role::Wan)
        .unwrap()
        .admin;
    let mut opts = WanOptions::new(admin, TOKEN.into());
    tune(&mut opts);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(async move {
        meridian_sim::wan::run(&cfg, opts, async {
            let _ = rx.await;
        })
        .await
    });
    for _ in 0..100 {
        if node.is_finished() {
            panic!("the wan node stopped: {:?}", node.await);
        }
        if TcpStream::connect(admin).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Wan {
        public,
        admin,
        _stop: tx,
    }
}

async fn ping(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    Ok(())
}

#[tokio::test]
async fn at_the_cap_a_new_connection_waits_until_one_ends() {
    let wan = start("127.95.0.0/16", |o| o.max_connections = 1).await;
    let mut a = TcpStream::connect(wan.public).await.unwrap();
    ping(&mut a).await.unwrap();

    let mut b = TcpStream::connect(wan.public).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(500), ping(&mut b)).await;
    assert!(early.is_err(), "b was relayed while a held the only slot");

    drop(a);
    tokio::time::timeout(Duration::from_secs(10), ping(&mut b))
        .await
        .expect("b is relayed once a has ended")
        .unwrap();
}

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn call(wan: &Wan, method: http::Method, path: &str, token: Option<&str>) -> u16 {
    meridian_http::client::call(
        wan.admin,
        method,
        path,
        token,
        Duration::from_secs(5),
        1 << 20,
    )
    .await
    .unwrap()
    .status
}

#[tokio::test]
async fn changing_the_network_needs_the_admin_token() {
    let wan = start("127.96.0.0/16", |_| {}).await;
    let (post, delete) = (http::Method::POST, http::Method::DELETE);
    let cut = "/partition?from=client:here&to=r1";
    let slow = "/slow?place=r1&extra=50ms";
    for (method, path) in [(&post, cut), (&delete, cut), (&post, slow), (&delete, slow)] {
        for token in [None, Some("wrong"), Some(&TOKEN[..31])] {
            assert_eq!(
                call(&wan, method.clone(), path, token).await,
                401,
                "{method} {path} with {token:?}"
            );
        }
    }
    // Nothing was cut by the refused calls: a connection through the WAN flows.
    let mut s = TcpStream::connect(wan.public).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), ping(&mut s))
        .await
        .expect("not partitioned")
        .unwrap();

    assert_eq!(call(&wan, post.clone(), cut, Some(TOKEN)).await, 200);
    assert_eq!(call(&wan, delete.clone(), cut, Some(TOKEN)).await, 200);
    assert_eq!(call(&wan, post.clone(), slow, Some(TOKEN)).await, 200);
    assert_eq!(call(&wan, delete.clone(), slow, Some(TOKEN)).await, 200);
    // Reading stays open to monitoring.
    assert_eq!(call(&wan, http::Method::GET, "/metrics", None).await, 200);
    assert_eq!(call(&wan, http::Method::GET, "/health", None).await, 200);
}
