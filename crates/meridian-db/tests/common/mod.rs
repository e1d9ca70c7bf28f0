//! Real PostgreSQL nodes for the tests: starting and stopping them, waiting for them,
//! and reading them over SQL, HTTP and /proc.
#![allow(dead_code)]

use meridian_db::{run, DbError, DbRole, PgOptions};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

pub const TOKEN: &str = "test-admin-token";
pub const PASSWORD: &str = "it's a test \\ password";

/// A test's directory, removed when the test ends well (kept after a failure, to look
/// at): an `up` with PostgreSQL leaves hundreds of MB per run.
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::PathBuf;
    fn deref(&self) -> &std::path::PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn base_dir(test: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("meridian-db-it-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub struct Running {
    pub name: String,
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), DbError>>,
}

pub fn start(opts: PgOptions) -> Running {
    let (stop, rx) = oneshot::channel::<()>();
    let name = opts.name.clone();
    let task = tokio::spawn(run(opts, async move {
        let _ = rx.await;
    }));
    Running { name, stop, task }
}

pub async fn stop(node: Running) {
    let _ = node.stop.send(());
    let result = tokio::time::timeout(Duration::from_secs(20), node.task)
        .await
        .unwrap_or_else(|_| panic!("{} did not stop within 20s", node.name))
        .expect("the node task panicked");
    if let Err(e) = result {
        panic!("{} ended with an error: {e}", node.name);
    }
}

/// Waits for /health 200, failing at once if the node's task ended (with its error).
pub async fn wait_healthy(node: &Running, admin: SocketAddr, limit: Duration) {
    let what = format!("/health of {}", node.name);
    wait_for(&what, limit, || async move {
        if node.task.is_finished() {
            panic!(
                "{} ended before it was healthy (its error is in the log above)",
                node.name
            );
        }
        match get(admin, "/health").await? {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        }
    })
    .await
}

/// GET over a fresh connection: (status code, body).
pub async fn get(admin: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status line in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| Err("no answer within 10s".into()))
}

/// Polls `check` every 200 ms until it gives Some, failing the test after `limit` with
/// the last reason.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(reason) => {
                if started.elapsed() > limit {
                    panic!("{what}: not within {}s: {reason}", limit.as_secs());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn sql(listen: SocketAddr) -> Result<Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(listen.ip().to_string())
        .port(listen.port())
        .user("postgres")
        .password(PASSWORD)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(3));
    let (client, conn) = cfg.connect(NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Processes whose command line mentions any of `needles` (data dirs, cluster names).
pub fn processes_mentioning(needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().any(|n| cmdline.contains(n.as_str())) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

pub fn options(name: &str, role: DbRole, ip: &str, dir: &Path) -> PgOptions {
    PgOptions {
        name: name.into(),
        role,
        listen: addr(&format!("{ip}:5432")),
        admin: addr(&format!("{ip}:9650")),
        upstream: None,
        source: None,
        sync_standbys: vec![],
        replicas: vec![],
        data_dir: dir.join(name).join("data"),
        password: PASSWORD.into(),
        peers: vec![],
        lease: Duration::from_secs(3),
        admin_token: TOKEN.into(),
        public: addr(&format!("{ip}:5432")),
        writer: None,
        region: "r1".into(),
        home_region: "r1".into(),
        promotion: meridian_db::Promotion::Automatic,
        max_promotion_lag: 16 << 20,
    }
}
