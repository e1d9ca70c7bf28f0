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
use futures_util::StreamExt;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use meridian_protect::idempotency::{Begin, Lease, StoredResponse};
use sha2::{Digest, Sha256};
use std::time::Duration;

const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// A leader's response body is read whole to be shared; past this it cannot be.
const MAX_SHARED_BODY: usize = 10 << 20;
/// An origin that goes quiet this long between two parts of its body fails the answer.
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
                let claim = Claim(Some(lease));
                let served = self.pass(ctx, route, body).await;
                let origin = served.origin.clone();
                let outcome = served.outcome;
                let (parts, body) = served.response.into_parts();
                let status = parts.status.as_u16();
                let headers: Vec<_> = parts
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let body = match read_shared(body).await {
                    Shared::Whole(b) => {
                        claim.complete(StoredResponse::new(status, headers, b.clone()));
                        meridian_http::full(b)
                    }
                    Shared::TooLarge(head, rest) => {
                        // The viewer gets the whole answer; duplicates learn it was done.
                        claim.complete(unknown_outcome("its answer was too large to keep"));
                        let head = futures_util::stream::iter(
                            head.into_iter().map(|b| Ok(hyper::body::Frame::data(b))),
                        );
                        let rest = http_body_util::BodyStream::new(rest);
                        BodyExt::boxed(http_body_util::StreamBody::new(head.chain(rest)))
                    }
                    // The claim, dropped, records an unknown outcome.
                    Shared::Failed => {
                        return refuse(
                            StatusCode::BAD_GATEWAY,
                            "the origin's answer stalled or broke off",
                        )
                    }
                };
                Served {
                    response: Response::from_parts(parts, body),
                    outcome,
                    origin,
                }
            }
        }
    }
}

/// The leader's hold on a key. Completed with the origin's answer; dropped any other way
/// (the viewer went away mid-request, the answer broke off), it records that the outcome
/// is unknown, so no duplicate within the window repeats an action the origin may have
/// taken: they get 409 and the client checks before retrying with a new key.
struct Claim(Option<Lease>);

impl Claim {
    fn complete(mut self, answer: StoredResponse) {
        if let Some(lease) = self.0.take() {
            lease.complete(answer);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(lease) = self.0.take() {
            lease.complete(unknown_outcome("it did not finish at this PoP"));
        }
    }
}

/// The answer duplicates get when the first request's answer cannot be replayed.
fn unknown_outcome(why: &str) -> StoredResponse {
    StoredResponse::new(
        StatusCode::CONFLICT.as_u16(),
        vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        Bytes::from(format!(
            "a request with this Idempotency-Key reached the origin, but {why}: check its outcome before retrying with a new key\n"
        )),
    )
}

/// A leader's answer body: whole (to share), too large to keep (what was read, and the
/// rest), or broken off.
enum Shared {
    Whole(Bytes),
    TooLarge(Vec<Bytes>, meridian_http::Body),
    Failed,
}

/// Reads the body within [`MAX_SHARED_BODY`], each frame within [`BODY_IDLE`].
async fn read_shared(mut body: meridian_http::Body) -> Shared {
    let mut parts = Vec::new();
    let mut len = 0;
    loop {
        match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    parts.push(data);
                    if len > MAX_SHARED_BODY {
                        return Shared::TooLarge(parts, body);
                    }
                }
            }
            Ok(Some(Err(_))) | Err(_) => return Shared::Failed,
        }
    }
    let mut out = bytes::BytesMut::with_capacity(len);
    for p in parts {
        out.extend_from_slice(&p);
    }
    Shared::Whole(out.freeze())
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
