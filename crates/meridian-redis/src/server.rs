//! The `redis-server` child. It never outlives its keeper: it is killed when its handle
//! is dropped, and the kernel signals it if the keeper dies (PR_SET_PDEATHSIG).

use crate::error::CacheError;
use std::collections::VecDeque;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How long SIGTERM may take before the server is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of the server's output kept for error messages.
const TAIL_LINES: usize = 12;

pub(crate) struct RedisServer {
    child: Child,
    pub pid: i32,
    tail: Arc<Mutex<VecDeque<String>>>,
    pump: JoinHandle<()>,
}

impl RedisServer {
    pub fn start(
        program: &Path,
        conf: &Path,
        name: &str,
        run_as: Option<crate::owner::RunAs>,
    ) -> Result<Self, CacheError> {
        let mut cmd = Command::new(program);
        if let Some(user) = run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd.arg(conf)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/");
        // SAFETY: prctl and getppid are async-signal-safe; the closure allocates nothing.
        // It runs after the uid change, which would otherwise clear the setting.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The keeper may have died between fork and prctl.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the keeper exited"));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| CacheError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let out = child.stdout.take();
        let err = child.stderr.take();
        let pump = tokio::spawn(pump(name.to_owned(), out, err, tail.clone()));
        tracing::info!("{name}: redis-server started (pid {pid})");
        Ok(RedisServer {
            child,
            pid,
            tail,
            pump,
        })
    }

    /// Waits for the server to exit on its own.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// The error for a server that stopped on its own, with its last words.
    pub async fn exited(self, status: std::io::Result<ExitStatus>, name: &str) -> CacheError {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.pump).await;
        let lines: Vec<String> = self
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        CacheError::Exited {
            name: name.to_owned(),
            status: match status {
                Ok(s) => describe(s),
                Err(e) => format!("cannot wait for it: {e}"),
            },
            output_tail: if lines.is_empty() {
                "(no output)".into()
            } else {
                lines.join(" | ")
            },
        }
    }

    /// SIGTERM, then SIGKILL if it takes longer than the grace period.
    pub async fn stop(mut self, name: &str) {
        if self.pid > 0 {
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
        }
        match tokio::time::timeout(STOP_GRACE, self.child.wait()).await {
            Ok(Ok(s)) => tracing::info!("{name}: redis-server stopped ({})", describe(s)),
            Ok(Err(e)) => tracing::warn!("{name}: waiting for redis-server to stop: {e}"),
            Err(_) => {
                tracing::warn!("{name}: redis-server ignored SIGTERM; killing it");
                let _ = self.child.kill().await;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.pump).await;
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Logs the server's output through tracing, one event per line, and keeps the tail.
async fn pump(
    name: String,
    out: Option<tokio::process::ChildStdout>,
    err: Option<tokio::process::ChildStderr>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let keep = |line: String| {
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    };
    let mut out = out.map(|o| BufReader::new(o).lines());
    let mut err = err.map(|e| BufReader::new(e).lines());
    loop {
        let line = tokio::select! {
            l = async { out.as_mut()?.next_line().await.ok().flatten() }, if out.is_some() => {
                if l.is_none() { out = None; }
                l
            }
            l = async { err.as_mut()?.next_line().await.ok().flatten() }, if err.is_some() => {
                if l.is_none() { err = None; }
                l
            }
            else => break,
        };
        let Some(line) = line else { continue };
        if line.trim().is_empty() {
            continue;
        }
        // Redis marks warnings with `#` after the timestamp.
        if line.contains(" # ") {
            tracing::warn!("{name}: {line}");
        } else {
            tracing::info!("{name}: {line}");
        }
        keep(line);
    }
}
