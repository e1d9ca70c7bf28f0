//! The access log: one JSON line per viewer request with the fields of CloudFront's
//! standard log, written by a background task so requests never wait on the disk.

use serde::Serialize;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

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

#[derive(Clone)]
pub struct AccessLog {
    tx: Option<mpsc::Sender<AccessLine>>,
}

impl AccessLog {
    /// Appends lines to `path`; `None` turns logging off.
    pub fn open(path: Option<PathBuf>) -> AccessLog {
        let Some(path) = path else {
            return AccessLog { tx: None };
        };
        let (tx, mut rx) = mpsc::channel::<AccessLine>(8192);
        tokio::spawn(async move {
            if let Some(dir) = path.parent() {
                let _ = tokio::fs::create_dir_all(dir).await;
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await;
            let mut file = match file {
                Ok(f) => tokio::io::BufWriter::new(f),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "access log unavailable");
                    while rx.recv().await.is_some() {}
                    return;
                }
            };
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(line) = rx.recv().await {
                buf.clear();
                let mut push = |l: &AccessLine| {
                    if serde_json::to_writer(&mut buf, l).is_ok() {
                        buf.push(b'\n');
                    }
                };
                push(&line);
                // Write whatever else is waiting in one go.
                while let Ok(more) = rx.try_recv() {
                    push(&more);
                }
                if file.write_all(&buf).await.is_err() || file.flush().await.is_err() {
                    tracing::warn!("access log write failed");
                }
            }
        });
        AccessLog { tx: Some(tx) }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a line; under overload a line is dropped rather than slowing a request.
    pub fn write(&self, line: AccessLine) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(line);
        }
    }
}
