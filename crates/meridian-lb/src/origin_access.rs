//! Origin access control: a balancer that requires the edge's signature refuses what did
//! not come through the CDN (`meridian_http::signing`). One that does not still keeps a
//! client from going around the CDN to claim a user: the fields the edge forwards verified
//! claims in pass only with a valid signature.

use http::{Method, Response, StatusCode};
use meridian_http::signing::Signer;
use meridian_http::Body;
use meridian_telemetry::prometheus_client::metrics::counter::Counter;

/// A request that did not come through the CDN gets 403, unless it is a GET or HEAD of an
/// unsigned path (health checks). The refusal is the response itself: it is built once per
/// refused request, so its size does not matter. `name`: the balancer's, in the refusal.
/// Ok(true) when the signature was checked, Ok(false) for an unsigned path let through.
#[allow(clippy::result_large_err)]
pub(crate) fn check(
    signer: Option<&Signer>,
    rejections: &Counter,
    name: &str,
    cfg: &meridian_config::LoadBalancer,
    parts: &http::request::Parts,
) -> Result<bool, Response<Body>> {
    let path = parts.uri.path();
    if matches!(parts.method, Method::GET | Method::HEAD)
        && cfg.unsigned_paths.iter().any(|p| p == path)
    {
        return Ok(false);
    }
    let refuse = |why: String| {
        rejections.inc();
        meridian_http::text(StatusCode::FORBIDDEN, format!("{name}: {why}"))
    };
    let Some(signer) = signer else {
        return Err(refuse(
            "this balancer requires an edge signature but holds no signing key".into(),
        ));
    };
    verify(signer, parts)
        .map(|()| true)
        .map_err(|e| refuse(e.to_string()))
}

/// Removes the claim fields (`cfg.claim_headers`) of a request that no edge signed: an
/// application trusts them as the edge's verified claims. Checks a signature only when one
/// of them is there, so other requests pay a few lookups. Returns how many were removed.
pub(crate) fn drop_unsigned_claims(
    signer: Option<&Signer>,
    cfg: &meridian_config::LoadBalancer,
    parts: &mut http::request::Parts,
) -> usize {
    let claimed = |h: &http::HeaderMap| cfg.claim_headers.iter().any(|n| h.contains_key(n));
    if !claimed(&parts.headers) || signer.is_some_and(|s| verify(s, parts).is_ok()) {
        return 0;
    }
    let mut removed = 0;
    for n in &cfg.claim_headers {
        removed += parts.headers.get_all(n.as_str()).iter().count();
        parts.headers.remove(n.as_str());
    }
    removed
}

fn verify(
    signer: &Signer,
    parts: &http::request::Parts,
) -> Result<(), meridian_http::signing::SignatureError> {
    let host = meridian_http::request_host(parts).unwrap_or("");
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    signer.verify(
        &parts.headers,
        &parts.method,
        host,
        pq,
        std::time::SystemTime::now(),
    )
}
