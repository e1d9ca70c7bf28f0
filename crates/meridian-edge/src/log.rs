//! The access log: one JSON line per viewer request with the fields of CloudFront's
//! standard log, written by a background thread so requests never wait on the disk.

use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request, as CloudFront's standard log names the fields.
#[derive(Debug, Serialize)]
pub struct AccessLine {
    pub date: String,
    pub time: String,
    #[serde(rename = "x-edge-location")]
    pub edge_location: String,
    #[serde(rename = "sc-bytes")]
    pub sc_bytes: u64,
    #[serde(rename = "c-ip")]
    pub client_ip: String,
    #[serde(rename = "c-port")]
    pub client_port: u16,
    #[serde(rename = "cs-method")]
    pub method: String,
    #[serde(rename = "cs(Host)")]
    pub host: String,
    #[serde(rename = "cs-uri-stem")]
    pub uri_stem: String,
    #[serde(rename = "cs-uri-query")]
    pub uri_query: String,
    #[serde(rename = "sc-status")]
    pub status: u16,
    #[serde(rename = "cs(Referer)")]
    pub referer: String,
    #[serde(rename = "cs(User-Agent)")]
    pub user_agent: String,
    #[serde(rename = "x-edge-result-type")]
    pub result_type: &'static str,
    #[serde(rename = "x-edge-detailed-result-type")]
    pub detailed_result_type: &'static str,
    #[serde(rename = "x-edge-request-id")]
    pub request_id: String,
    #[serde(rename = "cs-protocol")]
    pub protocol: &'static str,
    #[serde(rename = "cs-protocol-version")]
    pub protocol_version: String,
    #[serde(rename = "ssl-protocol")]
    pub ssl_protocol: String,
    #[serde(rename = "time-taken")]
    pub time_taken: f64,
    #[serde(rename = "sc-content-type")]
    pub content_type: String,
    #[serde(rename = "sc-content-len")]
    pub content_len: u64,
    #[serde(rename = "x-edge-origin")]
    pub origin: String,
}

/// Lines are queued in memory and written by a plain thread a few times a second, so a
/// request costs one short lock and no wake-up of any other thread.
#[derive(Clone)]
pub struct AccessLog {
    queue: Option<Arc<Mutex<Vec<AccessLine>>>>,
}

/// Lines held at most between two writes; beyond it lines are dropped, not queued.
const MAX_QUEUED: usize = 200_000;
const WRITE_EVERY: Duration = Duration::from_millis(200);

impl AccessLog {
    /// Appends lines to `path`; `None` turns logging off.
    pub fn open(path: Option<PathBuf>) -> AccessLog {
        let Some(path) = path else {
            return AccessLog { queue: None };
        };
        let queue = Arc::new(Mutex::new(Vec::<AccessLine>::new()));
        let weak = Arc::downgrade(&queue);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
                let mut file = match file {
                    Ok(f) => std::io::BufWriter::with_capacity(256 * 1024, f),
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "access log unavailable");
                        return;
                    }
                };
                loop {
                    std::thread::sleep(WRITE_EVERY);
                    let Some(queue) = weak.upgrade() else { break };
                    let lines = std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
                    drop(queue);
                    for l in &lines {
                        if serde_json::to_writer(&mut file, l).is_ok() {
                            let _ = file.write_all(b"\n");
                        }
                    }
                    if file.flush().is_err() {
                        tracing::warn!("access log write failed");
                    }
                }
                let _ = file.flush();
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the access log writer");
            return AccessLog { queue: None };
        }
        AccessLog { queue: Some(queue) }
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a line; under overload a line is dropped rather than slowing a request.
    pub fn write(&self, line: AccessLine) {
        if let Some(q) = &self.queue {
            let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
            if q.len() < MAX_QUEUED {
                q.push(line);
            }
        }
    }
}
