//! ALB's gRPC health check: one unary call over HTTP/2 (h2c with prior knowledge) to the
//! check's path, passed when its `grpc-status` is one of the check's codes. A call to
//! `grpc.health.v1.Health/Check` must also answer SERVING: the health protocol reports
//! NOT_SERVING with status 0, and a target saying so is not healthy.

use bytes::Bytes;
use http_body_util::Full;
use meridian_config::StatusMatcher;
use meridian_http::client::fetch_h2c;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The gRPC health checking protocol's method.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";
/// `HealthCheckResponse.ServingStatus.SERVING`.
const SERVING: u64 = 1;

/// One gRPC check of `addr` from `local`: healthy or not, and what was seen.
pub(crate) async fn check(
    local: Option<IpAddr>,
    addr: SocketAddr,
    path: &str,
    codes: &StatusMatcher,
    timeout: Duration,
) -> (bool, String) {
    match call(local, addr, path, timeout).await {
        Err(e) => (false, e),
        Ok((status, _)) if !codes.matches(status) => (
            false,
            format!("grpc-status {status} does not match {codes}"),
        ),
        Ok((status, Some(s))) if s != SERVING => (
            false,
            format!("grpc-status {status} but the service reports status {s} (not SERVING)"),
        ),
        Ok((status, _)) => (true, format!("grpc-status {status}")),
    }
}

/// One call with an empty request message (a `HealthCheckRequest` for every service);
/// returns the gRPC status and, for the health protocol, the serving status it reported.
async fn call(
    local: Option<IpAddr>,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Option<u64>), String> {
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(http::header::USER_AGENT, "Meridian-HealthChecker/1.0")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .map_err(|e| format!("bad health check path: {e}"))?;
    let answer = fetch_h2c(local, addr, req, timeout, 64 * 1024).await?;
    if answer.status != 200 {
        return Err(format!("HTTP status {} (not a gRPC answer)", answer.status));
    }
    // Trailers-only answers carry the status in the headers.
    let status = answer
        .trailers
        .as_ref()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| answer.headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .ok_or("the answer has no grpc-status")?;
    let serving = if path == HEALTH_CHECK_PATH && status == 0 {
        serving_status(&answer.body)
    } else {
        None
    };
    Ok((status, serving))
}

/// Field 1 (the serving status, a varint) of the first framed `HealthCheckResponse`;
/// 0 (UNKNOWN) when the message leaves it out, as protobuf's default.
fn serving_status(body: &[u8]) -> Option<u64> {
    let (head, rest) = body.split_at_checked(5)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut msg = rest.get(..len)?;
    while let Some((&tag, tail)) = msg.split_first() {
        msg = tail;
        let value = varint(&mut msg)?;
        match tag {
            0x08 => return Some(value),
            // Another varint field: skip it; any other wire type ends the search.
            t if t & 7 == 0 => continue,
            _ => return None,
        }
    }
    Some(0)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}
