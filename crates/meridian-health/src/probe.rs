//! One probe of one target.

use bytes::Bytes;
use http_body_util::Full;
use meridian_config::{CheckProtocol, HealthCheck};
use meridian_http::client::{connect_from, fetch_from, ClientError};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What one probe saw.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeOutcome {
    pub healthy: bool,
    /// Time from connect to the end of the response.
    #[serde(rename = "latency_ms", serialize_with = "as_millis")]
    pub latency: Duration,
    /// What was seen, for logs and status pages ("200 OK", "connection refused", ...).
    pub detail: String,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// Bodies beyond this are not read: a health page is small.
const MAX_BODY: usize = 64 * 1024;

/// Probes `addr` once as `check` says.
pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> ProbeOutcome {
    probe_from(None, addr, check).await
}

/// [`probe`] from the local address `local`.
pub async fn probe_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    check: &HealthCheck,
) -> ProbeOutcome {
    let start = Instant::now();
    match check.protocol {
        CheckProtocol::Tcp => {
            let r = tokio::time::timeout(check.timeout, connect_from(local, addr)).await;
            let (healthy, detail) = match r {
                Ok(Ok(_)) => (true, "connected".to_owned()),
                Ok(Err(e)) => (false, ClientError::from_connect(e).to_string()),
                Err(_) => (
                    false,
                    format!("timed out after {}ms", check.timeout.as_millis()),
                ),
            };
            ProbeOutcome {
                healthy,
                latency: start.elapsed(),
                detail,
            }
        }
        CheckProtocol::Http if check.grpc_codes.is_some() => {
            let codes = check.grpc_codes.as_ref().unwrap_or(&check.matcher);
            let (healthy, detail) =
                crate::grpc::check(local, addr, &check.path, codes, check.timeout).await;
            ProbeOutcome {
                healthy,
                latency: start.elapsed(),
                detail,
            }
        }
        CheckProtocol::Http => {
            let req = http::Request::get(check.path.as_str())
                .header(http::header::HOST, addr.to_string())
                .header(http::header::USER_AGENT, "Meridian-HealthChecker/1.0")
                .body(Full::new(Bytes::new()));
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    return ProbeOutcome {
                        healthy: false,
                        latency: Duration::ZERO,
                        detail: format!("bad health check path: {e}"),
                    }
                }
            };
            match fetch_from(local, addr, req, check.timeout, MAX_BODY).await {
                Err(e) => ProbeOutcome {
                    healthy: false,
                    latency: start.elapsed(),
                    detail: e.to_string(),
                },
                Ok(f) => {
                    let status_ok = check.matcher.matches(f.status);
                    let body_ok = match &check.body_contains {
                        Some(needle) => f
                            .body
                            .windows(needle.len().max(1))
                            .any(|w| w == needle.as_bytes()),
                        None => true,
                    };
                    let detail = if !status_ok {
                        format!("status {} does not match {}", f.status, check.matcher)
                    } else if !body_ok {
                        format!(
                            "status {} but body lacks {:?}",
                            f.status,
                            check.body_contains.as_deref().unwrap_or("")
                        )
                    } else {
                        format!("status {}", f.status)
                    };
                    ProbeOutcome {
                        healthy: status_ok && body_ok,
                        latency: f.latency,
                        detail,
                    }
                }
            }
        }
    }
}
