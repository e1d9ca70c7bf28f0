//! Request deduplication for unsafe requests (the IETF `Idempotency-Key` header, as
//! Stripe's API behaves): on a behavior with an `idempotency_window`, a POST, PUT, PATCH
//! or DELETE with a key reaches the origin once. A duplicate that arrives while the first
//! is in flight waits for it; one that arrives within the window gets the stored response
//! (marked `Idempotent-Replayed: true`); the same key with a different body gets 422.
//!
//! The key is scoped to the method, host, path and the viewer's `Authorization` and
//! cookies, so two users choosing the same key never see each other's answers.

use super::context::{RequestContext, Served};
use super::outcome::Outcome;
use super::route::Route;
use crate::edge::Edge;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use meridian_protect::idempotency::{Begin, StoredResponse};
use sha2::{Digest, Sha256};
use std::time::Duration;

const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// A leader's response body is read whole to be shared; past this it cannot be.
const MAX_SHARED_BODY: usize = 10 << 20;
/// An origin that goes quiet this long mid-body fails the shared answer.
const BODY_IDLE: Duration = Duration::from_secs(30);

impl Edge {
    /// `pass`, through the behavior's idempotency store when the request asks for it.
    pub(super) async fn pass_once(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        body: Bytes,
    ) -> Served {
        let unsafe_method = matches!(
            ctx.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let store = self.0.protect.idempotency.get(&ctx.behavior.path_pattern);
        let key = ctx.headers.get(IDEMPOTENCY_KEY);
        let (Some(store), Some(key), true) = (store, key, unsafe_method) else {
            return self.pass(ctx, route, body).await;
        };
        let Some(key) = key
            .to_str()
            .ok()
            .filter(|k| !k.is_empty() && k.len() <= 255)
        else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key must be 1 to 255 visible characters",
            );
        };
        // Who is asking: their credentials, by header or by cookie, so two users choosing
        // the same key never see each other's answers.
        let mut who = Sha256::new();
        for name in [http::header::AUTHORIZATION, http::header::COOKIE] {
            for v in ctx.headers.get_all(&name) {
                who.update(v.as_bytes());
                who.update(b"\n");
            }
        }
        let scope = format!(
            "{} {}{}\n{}\n{key}",
            ctx.method,
            ctx.host,
            ctx.path,
            hex::encode(who.finalize())
        );
        let mut h = Sha256::new();
        h.update(ctx.method.as_str());
        h.update(b"\n");
        h.update(ctx.path_and_query(|_| true));
        h.update(b"\n");
        h.update(&body);
        let fingerprint: [u8; 32] = h.finalize().into();
        let p = &self.0.protect;
        match store.begin(scope, fingerprint).await {
            Begin::Replay(stored) => {
                p.idempotent("replay");
                Served::at_edge(replayed(&stored), Outcome::Replay)
            }
            Begin::Mismatch => {
                p.idempotent("mismatch");
                refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "this Idempotency-Key was used with a different request",
                )
            }
            Begin::InFlight => {
                p.idempotent("in_flight");
                refuse(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still in progress",
                )
            }
            Begin::Busy => {
                p.idempotent("busy");
                let mut r = meridian_http::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many idempotent requests in flight; retry shortly",
                );
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
                Served::at_edge(r, Outcome::Error)
            }
            Begin::Leader(lease) => {
                p.idempotent("leader");
                let served = self.pass(ctx, route, body).await;
                let origin = served.origin.clone();
                let outcome = served.outcome;
                let (parts, body) = served.response.into_parts();
                let body = match tokio::time::timeout(BODY_IDLE, read_limited(body)).await {
                    Ok(Some(b)) => b,
                    // Dropping the lease lets a waiter try again rather than share a
                    // broken answer.
                    _ => {
                        drop(lease);
                        return refuse(
                            StatusCode::BAD_GATEWAY,
                            "the origin's answer could not be read whole",
                        );
                    }
                };
                let stored = StoredResponse::new(
                    parts.status.as_u16(),
                    parts
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    body.clone(),
                );
                lease.complete(stored);
                let response = Response::from_parts(parts, meridian_http::full(body));
                Served {
                    response,
                    outcome,
                    origin,
                }
            }
        }
    }
}

/// The whole body, or None past [`MAX_SHARED_BODY`] or on an error.
async fn read_limited(mut body: meridian_http::Body) -> Option<Bytes> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.ok()?.into_data() {
            if out.len() + data.len() > MAX_SHARED_BODY {
                return None;
            }
            out.extend_from_slice(&data);
        }
    }
    Some(out.freeze())
}

/// The stored answer again, marked as a replay.
fn replayed(stored: &StoredResponse) -> Response<meridian_http::Body> {
    let mut r = Response::new(meridian_http::full(stored.body.clone()));
    *r.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    for (k, v) in &stored.headers {
        r.headers_mut().append(k.clone(), v.clone());
    }
    r.headers_mut().insert(
        HeaderName::from_static("idempotent-replayed"),
        HeaderValue::from_static("true"),
    );
    r
}

fn refuse(status: StatusCode, body: &str) -> Served {
    Served::at_edge(meridian_http::text(status, body.to_owned()), Outcome::Error)
}
