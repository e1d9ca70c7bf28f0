//! Fill from the origin: one fetch for the cache, whose answer is stored (see `store.rs`)
//! and shared with every collapsed waiter, or streamed to the leader while it is stored.

use super::body::{Collect, Collector};
use super::error::{generated_error, text_headers, ErrorAnswer};
use super::inflight::{FillResult, LeaderResponse, Waiters};
use super::origin_functions::OriginCall;
use crate::compress;
use crate::edge::Edge;
use crate::key::Coding;
use crate::origin::{Group, OriginName, OriginResponse};
use crate::store::{storable_headers, Object};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use meridian_cache::{add_vary, conditional_request, initial_age, vary_names, CacheControl};
use meridian_config::CachePolicy;
use meridian_http::Body;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// Error bodies from origins kept to show every collapsed waiter.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Frames queued for the first viewer of a streaming miss. When they are not taken the
/// fill waits (and so does the origin connection): a slow viewer holds a few frames at
/// the edge, never the object.
const TEE_FRAMES: usize = 4;

/// What a fill needs, owned so the fill can outlive the viewer request.
pub(crate) struct FillRequest {
    pub key: String,
    pub path: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub viewer_headers: HeaderMap,
    /// The behavior admits only viewers with a verified token (which may have come in a
    /// cookie, not `Authorization`): answers are shared only when they say they may be.
    pub authenticated: bool,
    pub policy: CachePolicy,
    pub stale: Option<Arc<Object>>,
    /// Stream the answer to the leader while storing it.
    pub stream: bool,
    /// The behavior compresses (so a viewer may want a compressed variant instead).
    pub compress: bool,
    /// The behavior's origin-request and origin-response functions.
    pub hooks: super::origin_functions::OriginHooks,
    /// The members a viewer-request function chose, in order (None: the group's ranking).
    pub members: Option<Arc<[usize]>>,
    /// The leader viewer's way to interim heads: an origin's 103 Early Hints reach it
    /// (collapsed waiters get the final answer only).
    pub interim: Option<meridian_http::interim::Interim>,
}

/// When the origin was asked and when its answer arrived: a stored response's age
/// counts from these.
#[derive(Clone, Copy)]
pub(crate) struct Exchange {
    pub sent_at: SystemTime,
    pub received_at: SystemTime,
}

impl Edge {
    /// Fetches from the origin group and stores what may be stored. An answer that is not
    /// for sharing goes to the leader alone, through `leader`.
    pub(super) async fn fill(
        &self,
        group: &Group,
        req: FillRequest,
        leader: oneshot::Sender<LeaderResponse>,
        waiters: Waiters,
    ) -> FillResult {
        let mut headers = req.headers.clone();
        if let Some(s) = &req.stale {
            for (k, v) in &conditional_request(&s.meta.headers) {
                headers.insert(k.clone(), v.clone());
            }
        }
        let mut path_and_query = req.path_and_query.clone();
        let sent_at = self.0.clock.now();
        // The origin-request function may change the request or answer in the origin's place;
        // the origin-response function then sees the answer before the cache decides what to
        // keep (`origin_functions.rs`).
        let generated = match self
            .origin_request_hook(
                &req.hooks,
                OriginCall::new(&Method::GET, &mut path_and_query, &mut headers),
            )
            .await
        {
            Ok(g) => g,
            Err(e) => return FillResult::Failed(Arc::new(e)),
        };
        let r = match generated {
            Some(response) => OriginResponse {
                member: OriginName("function".into()),
                response,
                elapsed: Duration::ZERO,
            },
            None => {
                self.0.stats.origin_fetches.inc();
                let r = match self
                    .0
                    .origins
                    .fill(
                        group,
                        req.members.as_deref(),
                        &path_and_query,
                        &headers,
                        req.interim.as_ref(),
                    )
                    .await
                {
                    Ok(r) => r,
                    Err(failure) => {
                        return FillResult::Failed(Arc::new(generated_error(&self.0.pop, &failure)))
                    }
                };
                match self
                    .origin_response_hook(
                        &req.hooks,
                        OriginCall::new(&Method::GET, &mut path_and_query, &mut headers),
                        r.response,
                    )
                    .await
                {
                    Ok(response) => OriginResponse { response, ..r },
                    Err(e) => return FillResult::Failed(Arc::new(e)),
                }
            }
        };
        let status = r.response.status().as_u16();
        let at = Exchange {
            sent_at,
            received_at: self.0.clock.now(),
        };
        if status == 304 {
            if let Some(stale) = &req.stale {
                let object = self.store_refreshed(&req.policy, stale, r.response.headers(), at);
                return FillResult::Stored {
                    object,
                    refreshed: true,
                    origin: r.member,
                };
            }
        }
        if status >= 500 {
            return self.origin_error(group, &req, r, at).await;
        }
        let Some((ttl, vary)) = self.keepable(&req, &r, at.received_at) else {
            let _ = leader.send(LeaderResponse::Unshared(r));
            return FillResult::Pass;
        };
        let OriginResponse {
            member, response, ..
        } = r;
        let (parts, body) = response.into_parts();
        // A viewer that will be served a compressed variant waits for the stored object.
        let coding = self.coding_for(
            req.compress,
            &req.viewer_headers,
            status,
            &parts.headers,
            CacheControl::from_headers(&parts.headers).no_transform,
            body.size_hint().exact(),
        );
        let tee = if req.stream && coding == Coding::Identity {
            // The leader gets the bytes as they come; the fill keeps a copy to store.
            let (tx, rx) = tokio::sync::mpsc::channel(TEE_FRAMES);
            let response = streaming_response(&req, &parts, at, rx);
            let origin = member.clone();
            let _ = leader.send(LeaderResponse::Streaming { response, origin });
            Some(tx)
        } else {
            None
        };
        let collector = Collector {
            limit: self.0.store.max_object() as usize,
            idle: group.cfg.response_timeout,
            tee,
            budget: Some(self.0.fill_bytes.clone()),
            abandoned: Some(Box::new(move || waiters.none_left())),
        };
        // Held until the object is stored, where the memory tier accounts for it.
        let (body, _reserved) = match collector.collect(body).await {
            Ok(b) => b,
            // Too large to keep (or no room to keep it now), or no one wants it any
            // more: a streaming leader still gets it all; others ask for themselves.
            Err(Collect::TooLarge | Collect::NoRoom | Collect::Abandoned) => {
                return FillResult::Pass
            }
            Err(e) => {
                return FillResult::Failed(Arc::new(ErrorAnswer {
                    status: StatusCode::BAD_GATEWAY,
                    headers: text_headers(),
                    body: Bytes::from(format!(
                        "{}: the origin's response could not be read whole: {e}\n",
                        self.0.pop
                    )),
                    origin: Some(member),
                }))
            }
        };
        self.0.stats.bytes_from_origins.inc_by(body.len() as u64);
        let object = self.store_object(&req, &parts, body, ttl, vary, at);
        FillResult::Stored {
            object,
            refreshed: false,
            origin: member,
        }
    }

    /// How long the cache may keep an origin's answer and the request headers that select
    /// it (Vary), or None when the answer is the leader's alone: not to be shared,
    /// `Vary: *`, or larger than the cache keeps.
    fn keepable(
        &self,
        req: &FillRequest,
        r: &OriginResponse,
        received_at: SystemTime,
    ) -> Option<(Duration, Option<Vec<String>>)> {
        let status = r.response.status().as_u16();
        let headers = r.response.headers();
        let ttl = self.store_ttl(req, status, headers, received_at)?;
        // Vary on anything but Accept-Encoding (the edge stores identity) selects variants.
        let vary = vary_names(headers, &["accept-encoding"]);
        if vary.as_ref().is_some_and(|v| v.iter().any(|n| n == "*")) {
            return None;
        }
        if r.response.body().size_hint().lower() > self.0.store.max_object() {
            return None;
        }
        Some((ttl, vary))
    }

    /// An origin's 5xx: kept for the custom error response's caching TTL when there is
    /// one, else told to every waiter (unless they have stale copies to serve).
    async fn origin_error(
        &self,
        group: &Group,
        req: &FillRequest,
        r: OriginResponse,
        at: Exchange,
    ) -> FillResult {
        let status = r.response.status().as_u16();
        let (parts, body) = r.response.into_parts();
        let body = Collector::new(MAX_ERROR_BODY, group.cfg.response_timeout)
            .collect(body)
            .await
            .map(|(b, _)| b)
            .unwrap_or_default();
        self.0.stats.bytes_from_origins.inc_by(body.len() as u64);
        let mut h = parts.headers;
        meridian_http::strip_hop_by_hop(&mut h);
        // Every collapsed waiter gets this answer: one viewer's cookie is no one else's.
        h.remove(header::SET_COOKIE);
        // CloudFront keeps an origin's error for the custom error response's caching
        // TTL, so a struggling origin is not asked again by every viewer. A stale copy
        // that may be served on error is better than that.
        let error_ttl = self
            .custom_error_for(status)
            .map(|c| c.error_caching_min_ttl)
            .filter(|t| !t.is_zero());
        if let (Some(ttl), None) = (error_ttl, &req.stale) {
            let object = self.store_error(req, status, &h, body, ttl, at);
            return FillResult::Stored {
                object,
                refreshed: false,
                origin: r.member,
            };
        }
        FillResult::Failed(Arc::new(ErrorAnswer {
            status: parts.status,
            headers: h,
            body,
            origin: Some(r.member),
        }))
    }
}

/// The leader's response for a streaming miss: the storable head as the cache will keep
/// it, with the body arriving through `frames` as the fill reads it.
fn streaming_response(
    req: &FillRequest,
    parts: &http::response::Parts,
    at: Exchange,
    frames: tokio::sync::mpsc::Receiver<Result<hyper::body::Frame<Bytes>, meridian_http::BoxError>>,
) -> Response<Body> {
    let mut headers = storable_headers(&parts.headers);
    meridian_http::strip_hop_by_hop(&mut headers);
    headers.insert(
        header::AGE,
        HeaderValue::from(initial_age(&parts.headers, at.sent_at, at.received_at).as_secs()),
    );
    if req.compress && compress::compressible(&headers) {
        add_vary(&mut headers, "Accept-Encoding");
    }
    let stream =
        futures_util::stream::unfold(
            frames,
            |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
        );
    let mut res = Response::new(http_body_util::StreamBody::new(stream).boxed());
    *res.status_mut() = parts.status;
    *res.headers_mut() = headers;
    res
}
