//! Helpers shared by the CLI's integration tests (each test binary uses some of them).
#![allow(dead_code)]

pub mod rollout;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A fresh directory under the system temp dir.
pub fn tempdir() -> TempDir {
    let dir = std::env::temp_dir().join(format!(
        "meridian-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

pub fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("endpoints.json")).unwrap()).unwrap()
}

/// The first node of `role` in a running deployment's endpoints.json.
pub fn first_node(dir: &Path, role: &str) -> serde_json::Value {
    state(dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == role)
        .unwrap_or_else(|| panic!("no {role} node"))
        .clone()
}

pub fn alive(pid: i64) -> bool {
    // kill(pid, 0) probes for existence; zombies of ours are reaped by `up`.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// Stops the deployment even when an assertion fails half way.
pub struct Up(Option<Child>);
impl Up {
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.0.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().ok()
    }
}
impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `meridian up` on a config and waits for its table; returns the guard and the table.
pub async fn start_up(cfg: &Path, state_dir: &Path) -> (Up, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .arg("up")
        .arg("--config")
        .arg(cfg)
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up = Up(Some(child));
    let printed = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Press Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines.join("\n")
    });
    let printed = tokio::time::timeout(Duration::from_secs(60), printed)
        .await
        .expect("up printed its table")
        .unwrap();
    assert!(
        printed.contains("Press Ctrl-C"),
        "up stopped early:\n{printed}"
    );
    (up, printed)
}

pub async fn get(
    client: &meridian_http::UpstreamClient,
    url: &str,
) -> Result<(u16, http::HeaderMap, Bytes), String> {
    let req = http::Request::get(url)
        .body(meridian_http::empty())
        .map_err(|e| e.to_string())?;
    let res = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts.status.as_u16(), parts.headers, body))
}

/// Asks the DNS `server` for `name`'s first A record from a source address, as a client in
/// that location would.
pub fn ask(server: &str, from: &str, name: &str) -> Option<String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::str::FromStr;
    let sock = std::net::UdpSocket::bind(format!("{from}:0")).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_str(name).ok()?, RecordType::A));
    sock.send_to(&q.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let r = Message::from_vec(&buf[..n]).ok()?;
    r.answers.iter().find_map(|a| match &a.data {
        RData::A(ip) => Some(ip.0.to_string()),
        _ => None,
    })
}

/// Nodes started one by one with `meridian run --node`, as on real hosts; killed when the
/// test ends.
pub struct Nodes(pub Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A state dir under `dir` holding `token` as the deployment's admin token (0600), as a
/// real deployment mounts one for every node.
pub fn state_with_token(dir: &Path, token: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let file = state.join("admin-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    state
}

/// `meridian run --config CFG --node NODE` with the state dir `state`, quiet.
pub fn run_node(cfg: &Path, state: &Path, node: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["run", "--config"])
        .arg(cfg)
        .args(["--node", node])
        .env("MERIDIAN_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("meridian run")
}

/// `meridian rollout --service-version V`, bounded: (exit code, stdout, stderr).
pub async fn rollout(state_dir: &Path, version: &str) -> (i32, String, String) {
    rollout_with(state_dir, version, &[]).await
}

/// `meridian rollout` with more flags (`--strategy canary ...`).
pub async fn rollout_with(
    state_dir: &Path,
    version: &str,
    flags: &[&str],
) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meridian"));
    cmd.args(["rollout", "--service-version", version, "--state-dir"])
        .arg(state_dir)
        .args(flags);
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::task::spawn_blocking(move || cmd.output().unwrap()),
    )
    .await
    .expect("the rollout ended within two minutes")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
