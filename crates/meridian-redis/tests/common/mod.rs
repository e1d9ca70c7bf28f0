//! A cache cluster of two real redis-servers and their keepers in this process, for the
//! tests: each on its own loopback /24.
#![allow(dead_code)]

use meridian_http::secrets::Secret;
use meridian_redis::{CacheOptions, CacheRole, Peer};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const PASSWORD: &str = "cachetest0123456789";
pub const TOKEN: &str = "tokentest0123456789";
pub const FAILOVER: Duration = Duration::from_secs(2);
/// How much later than the failover time a promotion may come (checks, busy cores).
pub const MARGIN: Duration = Duration::from_secs(4);

pub struct Node {
    pub name: String,
    pub redis: SocketAddr,
    pub admin: SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), meridian_redis::CacheError>>,
}

pub struct Cluster {
    pub primary: Node,
    pub replica: Node,
    pub endpoint: SocketAddr,
    pub dir: std::path::PathBuf,
    /// Every redis-server pid seen, to wake any left frozen.
    pub pids: Vec<i32>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in [&mut self.primary, &mut self.replica] {
            if let Some(s) = n.stop.take() {
                let _ = s.send(());
            }
        }
        // Frozen servers must not outlive the test.
        for pid in &self.pids {
            unsafe {
                libc::kill(*pid, libc::SIGCONT);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn alive(pid: i32) -> bool {
    // Reaped children are gone; a zombie would still answer, but the keeper waits for its.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Options for node `az` (0 or 1) of the test cluster in `<subnet>.0/24` (such as
/// "127.81.11"), with `password`.
pub fn options_in(
    subnet: &str,
    az: u8,
    role: CacheRole,
    dir: &std::path::Path,
    password: Secret,
) -> CacheOptions {
    let net = subnet.rsplit('.').next().unwrap_or("0");
    let ip = |n: u8| format!("{subnet}.{n}");
    let me: SocketAddr = format!("{}:6379", ip(70 + az)).parse().unwrap();
    let other = 70 + (1 - az);
    CacheOptions {
        name: format!("redis-t{net}-{az}"),
        role,
        listen: me,
        admin: format!("{}:9900", ip(70 + az)).parse().unwrap(),
        peer: Some(Peer {
            name: format!("redis-t{net}-{}", 1 - az),
            address: format!("{}:6379", ip(other)).parse().unwrap(),
            admin: format!("{}:9900", ip(other)).parse().unwrap(),
        }),
        password,
        maxmemory: 16 << 20,
        eviction: "allkeys-lru".into(),
        failover: FAILOVER,
        dir: dir.join(format!("node{az}")),
        admin_token: TOKEN.into(),
        endpoint: Some(format!("{}:6379", ip(79)).parse().unwrap()),
        audit: std::sync::Arc::new(meridian_http::audit::AuditLog::disabled("redis-test")),
    }
}

/// Options for node `az` of the cluster in 127.81.`net`.0/24, with [`PASSWORD`].
pub fn options(net: u8, az: u8, role: CacheRole, dir: &std::path::Path) -> CacheOptions {
    options_in(&format!("127.81.{net}"), az, role, dir, PASSWORD.into())
}

pub fn start(opts: CacheOptions) -> Node {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (name, redis, admin) = (opts.name.clone(), opts.listen, opts.admin);
    let task = tokio::spawn(meridian_redis::run(opts, async move {
        let _ = rx.await;
    }));
    Node {
        name,
        redis,
        admin,
        stop: Some(tx),
        task,
    }
}

/// The cluster in 127.81.`net`.0/24 with the fixed [`PASSWORD`], healthy.
pub async fn cluster(net: u8) -> Cluster {
    let dir = std::env::temp_dir().join(format!("meridian-redis-t{net}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    cluster_in(&format!("127.81.{net}"), dir, |_| PASSWORD.into()).await
}

/// A healthy cluster in `<subnet>.0/24` kept in `dir`; `password` gives each node's
/// password holder, given the directory (a test may keep a password file there first).
pub async fn cluster_in(
    subnet: &str,
    dir: std::path::PathBuf,
    password: impl Fn(&std::path::Path) -> Secret,
) -> Cluster {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    std::fs::create_dir_all(&dir).unwrap();
    let primary = start(options_in(
        subnet,
        0,
        CacheRole::Primary,
        &dir,
        password(&dir),
    ));
    let replica = start(options_in(
        subnet,
        1,
        CacheRole::Replica,
        &dir,
        password(&dir),
    ));
    let c = Cluster {
        primary,
        replica,
        endpoint: format!("{subnet}.79:6379").parse().unwrap(),
        dir,
        pids: Vec::new(),
    };
    for n in [&c.primary, &c.replica] {
        wait_for(
            Duration::from_secs(20),
            &format!("{} healthy", n.name),
            || async { http(n.admin, "GET", "/health", None).await.0 == 200 },
        )
        .await;
    }
    let mut c = c;
    for n in [&c.primary, &c.replica] {
        let pid = status(n).await["pid"].as_i64().expect("a pid in /status");
        c.pids.push(pid as i32);
    }
    c
}

/// Polls `cond` every 100 ms until it holds, or fails the test after `limit`.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut cond: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One HTTP/1.1 request to an admin server: status code and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        Some((
            head.split_whitespace().nth(1)?.parse().ok()?,
            body.to_owned(),
        ))
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

pub async fn status(n: &Node) -> serde_json::Value {
    let (code, body) = http(n.admin, "GET", "/status", None).await;
    if code != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}
