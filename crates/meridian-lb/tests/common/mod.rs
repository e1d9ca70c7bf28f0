//! Starting a balancer in a test, shared by the balancer's test files.
#![allow(dead_code)]

pub mod targets;

use meridian_lb::LbOptions;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A port free on `ip` now (another test may take it before it is bound again).
pub async fn free_port(ip: IpAddr) -> SocketAddr {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts a balancer on free ports of `opts`' listen and admin addresses; returns them
/// once both accept connections (retrying on other ports if one was taken meanwhile).
pub async fn start(opts: LbOptions) -> (SocketAddr, SocketAddr) {
    for _ in 0..5 {
        let mut opts = opts.clone();
        opts.listen = free_port(opts.listen.ip()).await;
        opts.admin = free_port(opts.admin.ip()).await;
        let (l, a) = (opts.listen, opts.admin);
        let run = tokio::spawn(meridian_lb::run(opts, std::future::pending()));
        for _ in 0..100 {
            if run.is_finished() {
                break;
            }
            if TcpStream::connect(l).await.is_ok() && TcpStream::connect(a).await.is_ok() {
                return (l, a);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("load balancer did not start");
}

/// A balancer of region `test-1` named `name` on `listen` and `admin`, in front of
/// `targets` (address, instance name) in AZ `test-1a`, with `config`.
pub fn lb_options(
    name: &str,
    listen: SocketAddr,
    admin: SocketAddr,
    targets: &[(SocketAddr, String)],
    config: meridian_config::LoadBalancer,
) -> LbOptions {
    LbOptions {
        tls: None,
        name: name.into(),
        region: "test-1".into(),
        listen,
        admin,
        targets: targets
            .iter()
            .map(|(a, n)| meridian_config::NodeSpec {
                name: n.clone(),
                role: meridian_config::Role::Service,
                region: Some("test-1".into()),
                az: Some("test-1a".into()),
                address: *a,
                admin: *a,
            })
            .collect(),
        config,
        signer: None,
        access_log: None,
    }
}

/// One plain GET with `Connection: close`; the whole answer as text (at most 5 s).
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls the balancer's `/health` until it counts `n` healthy targets (at most 20 s).
pub async fn wait_healthy(admin: SocketAddr, n: usize) {
    let until = Instant::now() + Duration::from_secs(20);
    let want = format!("\"healthy_targets\":{n}");
    loop {
        let health = http_get(admin, "/health").await;
        if health.contains(&want) {
            return;
        }
        assert!(Instant::now() < until, "not {n} healthy targets: {health}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The default deployment's config without its `[[load_balancer.target_group]]` and
/// `[[load_balancer.rule]]` tables (the gRPC group and its rule), so that a test's own
/// groups and rules are the only ones (its first group is the default action, its rules
/// numbered 10, 20, ... as written).
pub fn default_config_without_groups() -> String {
    let mut out = String::new();
    let mut skip = false;
    for line in meridian_config::DEFAULT_CONFIG.lines() {
        // A table header starts at the line's first column.
        if line.starts_with('[') {
            skip = line.starts_with("[[load_balancer.target_group]]")
                || line.starts_with("[[load_balancer.rule]]");
        }
        if !skip {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
