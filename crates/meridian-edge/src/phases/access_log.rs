//! The access log line of a request, in CloudFront's standard log fields.

use super::context::{RequestContext, Served};
use crate::log::{AccessLine, AccessLog};
use http::header;
use meridian_http::audit::utc_date_time;
use std::time::{Duration, SystemTime};

/// Writes the line of one answered request (nothing when the log is off).
pub(crate) fn write(
    log: &AccessLog,
    pop: &str,
    ctx: &RequestContext<'_>,
    served: &Served,
    bytes: u64,
    elapsed: Duration,
) {
    if !log.enabled() {
        return;
    }
    let res = &served.response;
    let (date, time) = utc_date_time(SystemTime::now());
    let get = |n: header::HeaderName| {
        ctx.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let outcome = served.outcome;
    log.write(AccessLine {
        date,
        time,
        edge_location: pop.to_owned(),
        sc_bytes: bytes,
        client_ip: meridian_http::ids::ip_text(ctx.peer.addr.ip()),
        client_port: ctx.peer.addr.port(),
        method: ctx.method.to_string(),
        host: ctx.host.clone(),
        uri_stem: ctx.path.clone(),
        uri_query: ctx.query.clone().unwrap_or_else(|| "-".into()),
        status: res.status().as_u16(),
        referer: get(header::REFERER),
        user_agent: get(header::USER_AGENT),
        result_type: outcome.result_type(),
        detailed_result_type: outcome.label(),
        request_id: ctx.request_id.clone(),
        protocol: if ctx.peer.tls.is_some() {
            "https"
        } else {
            "http"
        },
        protocol_version: format!("{:?}", ctx.version),
        ssl_protocol: ctx.peer.tls.unwrap_or("-").to_owned(),
        time_taken: (elapsed.as_secs_f64() * 1e6).round() / 1e6,
        content_type: res
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned(),
        content_len: bytes,
        origin: served
            .origin
            .as_ref()
            .map_or_else(|| "-".into(), |o| o.as_str().to_owned()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_dates_are_utc_civil_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_609_845);
        assert_eq!(utc_date_time(t), ("2026-11-25".into(), "12:30:45".into()));
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(
            utc_date_time(leap),
            ("2000-02-29".into(), "00:00:00".into())
        );
        assert_eq!(
            utc_date_time(SystemTime::UNIX_EPOCH),
            ("1970-01-01".into(), "00:00:00".into())
        );
    }
}
