//! Sending one request to an origin group: members in rank order, failing over inside
//! the viewer's request when it is safe to repeat. The loop is the shared one
//! ([`meridian_http::failover`]); this file says what differs at the edge.

use super::answer::{OriginFailure, OriginName, OriginResponse};
use super::group::Group;
use super::outbound::Outbound;
use super::Origins;
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use meridian_http::failover::{Failover, Fault, Reason, Verdict};
use meridian_http::grpc::RequestBody;
use meridian_http::interim::Interim;
use meridian_http::Body;
use std::time::Duration;

impl Origins {
    /// Sends a request to the group, trying members in rank order. A member that refuses
    /// the connection is passed over for any method; one that times out or answers with a
    /// failover status is passed over when the request is safe to repeat.
    pub async fn send(
        &self,
        group: &Group,
        only: Option<&[usize]>,
        req: Outbound<'_>,
    ) -> Result<OriginResponse, OriginFailure> {
        self.send_via(group, only, req, false).await
    }

    /// [`Origins::send`] for a cache fill: through the regional edge caches when the
    /// deployment has them (`tier.rs`). Only fills go through the tier, as CloudFront's
    /// regional edge caches see only cacheable requests: a pass, a POST, gRPC or a
    /// WebSocket would only gain a hop there.
    pub async fn fill(
        &self,
        group: &Group,
        only: Option<&[usize]>,
        path_and_query: &str,
        headers: &HeaderMap,
        interim: Option<&Interim>,
    ) -> Result<OriginResponse, OriginFailure> {
        let on = self.tier_on.load(std::sync::atomic::Ordering::Relaxed);
        let req = Outbound {
            method: &Method::GET,
            path_and_query,
            headers,
            body: RequestBody::from(bytes::Bytes::new()),
            interim: interim.cloned(),
        };
        self.send_via(group, only, req, on).await
    }

    async fn send_via(
        &self,
        group: &Group,
        only: Option<&[usize]>,
        req: Outbound<'_>,
        via_tier: bool,
    ) -> Result<OriginResponse, OriginFailure> {
        let Outbound {
            method,
            path_and_query,
            headers,
            body,
            interim,
        } = req;
        // gRPC goes over HTTP/2, whose trailers and streams HTTP/1.1 does not carry.
        let grpc = meridian_http::grpc::is_grpc(headers);
        let client = if grpc { &self.client_h2 } else { &self.client };
        let via_tier = via_tier && !grpc && !headers.contains_key(http::header::UPGRADE);
        let tier_ok = |&i: &usize| via_tier || group.members[i].tier.is_none();
        let members = Members {
            origins: self,
            group,
            method,
            path_and_query,
            headers,
            safe: matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
                && matches!(body, RequestBody::Full(_)),
            grpc,
            body,
            interim,
            order: match only {
                // A function's choice, in its order (members of this group only).
                Some(o) => o
                    .iter()
                    .copied()
                    .filter(|&i| i < group.members.len())
                    .filter(tier_ok)
                    .collect(),
                None => group.ranked().into_iter().filter(tier_ok).collect(),
            },
            next: 0,
            attempts: Vec::new(),
            all_timeouts: true,
            last_bad: None,
        };
        self.hedges.request();
        meridian_http::failover::run(client, group.cfg.response_timeout, members).await
    }

    fn failover(&self, reason: &str) {
        self.m
            .failovers
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }
}

/// One request's way through a group's members.
struct Members<'a> {
    origins: &'a Origins,
    group: &'a Group,
    method: &'a Method,
    path_and_query: &'a str,
    headers: &'a HeaderMap,
    body: RequestBody,
    interim: Option<Interim>,
    /// A gRPC call: never hedged (a second call is a second stream of the application's).
    grpc: bool,
    /// Safe to repeat: only these methods fail over after a request may have been sent.
    safe: bool,
    /// Member indexes in the order to try them.
    order: Vec<usize>,
    /// How many of `order` have been taken.
    next: usize,
    /// One line per member tried.
    attempts: Vec<String>,
    all_timeouts: bool,
    /// The last member's failover-status answer, relayed if no member does better.
    last_bad: Option<OriginResponse>,
}

type Answer = Result<OriginResponse, OriginFailure>;

impl Members<'_> {
    /// What the request comes to when no member answered for good: the last member's own
    /// error answer is better than ours.
    fn outcome(&mut self) -> Answer {
        if let Some(r) = self.last_bad.take() {
            return Ok(r);
        }
        Err(OriginFailure {
            attempts: std::mem::take(&mut self.attempts),
            timed_out: self.all_timeouts,
        })
    }

    fn count(&self, i: usize, outcome: &str) {
        let m = &self.group.members[i];
        self.origins
            .m
            .requests
            .get_or_create(&vec![
                ("origin", m.name.clone()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }
}

impl Failover for Members<'_> {
    type Candidate = usize;
    type Output = Answer;

    fn replayable(&self) -> bool {
        self.safe
    }

    fn retry_timeouts(&self) -> bool {
        true
    }

    fn next(&mut self) -> Option<usize> {
        // A streamed body some member took is gone: nothing is left to send elsewhere.
        if self.body.spent() {
            return None;
        }
        let i = *self.order.get(self.next)?;
        self.next += 1;
        Some(i)
    }

    fn more(&self) -> bool {
        self.next < self.order.len()
    }

    fn hedge_after(&mut self) -> Option<Duration> {
        // A WebSocket handshake opens a long-lived tunnel: never two of them.
        if !self.group.cfg.hedging || self.grpc || self.headers.contains_key(http::header::UPGRADE)
        {
            return None;
        }
        let i = *self.order.get(self.next.checked_sub(1)?)?;
        self.group.members[i]
            .head_latency
            .hedge_after(self.group.cfg.response_timeout)
    }

    fn may_hedge(&mut self) -> bool {
        let ok = self.origins.hedges.take();
        self.origins
            .failover(if ok { "hedge" } else { "hedge_over_budget" });
        ok
    }

    fn request(&mut self, &mut i: &mut usize) -> Result<Request<Body>, Answer> {
        let m = &self.group.members[i];
        let scheme = if m.tls { "https" } else { "http" };
        let uri = format!("{scheme}://{}{}", m.addr, self.path_and_query);
        let mut req = Request::builder().method(self.method.clone()).uri(uri);
        if let Some(h) = req.headers_mut() {
            *h = self.headers.clone();
            h.remove(super::tier::TIER_HEADER);
            if m.tier.is_some() {
                h.insert(super::tier::TIER_HEADER, self.origins.pop.clone());
            }
            // Signed with the Host the origin will see: the one set here, else the
            // member's address (hyper writes it from the URI).
            if let Some(s) = self.origins.signer.get() {
                let addr = m.addr.to_string();
                let host = h
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(&addr)
                    .to_owned();
                // A regional cache's signature is not a balancer's (`signing::Audience`).
                let audience = match m.tier {
                    Some(_) => meridian_http::signing::Audience::Tier,
                    None => meridian_http::signing::Audience::Origin,
                };
                h.insert(
                    meridian_http::signing::HEADER,
                    s.sign_for(audience, self.method, &host, self.path_and_query),
                );
            }
        }
        match req.body(self.body.attempt()) {
            Ok(mut req) => {
                if let Some(interim) = &self.interim {
                    interim.attach(&mut req);
                }
                Ok(req)
            }
            Err(_) => {
                self.attempts
                    .push(format!("{}: the request could not be built", m.name));
                Err(self.outcome())
            }
        }
    }

    async fn answered(
        &mut self,
        i: usize,
        res: Response<Incoming>,
        elapsed: Duration,
    ) -> Verdict<Answer> {
        let m = &self.group.members[i];
        self.origins
            .m
            .duration
            .get_or_create(&vec![("origin", m.name.clone())])
            .observe(elapsed.as_secs_f64());
        let status = res.status().as_u16();
        self.count(i, &format!("{}xx", status / 100));
        m.head_latency.observe(elapsed);
        // A transfer coding the edge cannot undo would reach viewers undecoded, with
        // nothing saying so: RFC 9112 §6.1 leaves a clean 502 as the honest answer.
        if let Some(coding) = unknown_transfer_coding(res.headers()) {
            self.all_timeouts = false;
            self.attempts.push(format!(
                "{}: answered with transfer coding `{coding}`, which the edge cannot decode",
                m.name
            ));
            return Verdict::Done(Err(OriginFailure {
                attempts: std::mem::take(&mut self.attempts),
                timed_out: false,
            }));
        }
        let answer = OriginResponse {
            member: OriginName(m.name.clone()),
            response: res.map(|b| {
                http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(b, Into::into))
            }),
            elapsed,
        };
        if self.group.cfg.failover_statuses.contains(&status) && self.safe && self.more() {
            self.attempts.push(format!("{}: answered {status}", m.name));
            self.all_timeouts = false;
            self.last_bad = Some(answer);
            return Verdict::Next(Reason::Answer);
        }
        Verdict::Done(Ok(answer))
    }

    fn failed(
        &mut self,
        &mut i: &mut usize,
        fault: Fault,
        error: Option<&hyper_util::client::legacy::Error>,
    ) {
        let m = &self.group.members[i];
        let Some(e) = error else {
            self.count(i, "timeout");
            // A member that holds a request past the timeout is treated as down until its
            // health checks pass again, so the next viewers do not wait for it too (a
            // frozen region costs one timeout, not one per request).
            self.origins
                .board
                .report_failure(&m.key, "no response within the response timeout");
            self.attempts.push(format!(
                "{}: no response within {}",
                m.name,
                meridian_config::units::format_duration(self.group.cfg.response_timeout)
            ));
            return;
        };
        self.all_timeouts = false;
        let connect = fault == Fault::Connect;
        self.count(i, if connect { "connect_error" } else { "io_error" });
        self.attempts
            .push(format!("{}: {}", m.name, meridian_http::describe(e)));
        if connect {
            self.origins
                .board
                .report_failure(&m.key, "connection failed");
        }
    }

    fn stopped(&mut self, _: usize, _: Fault) -> Answer {
        self.outcome()
    }

    fn retrying(&mut self, reason: Reason) {
        // The edge's failover series has never told a reset from other I/O errors.
        self.origins.failover(match reason {
            Reason::Fault(Fault::Connect) => "connect",
            Reason::Fault(Fault::Timeout) => "timeout",
            Reason::Fault(Fault::Reset | Fault::Io) => "io",
            Reason::Answer => "status",
            // Counted when the hedge is sent (`may_hedge`), with the budget's verdict.
            Reason::Hedge => return,
        });
    }

    fn exhausted(mut self) -> Answer {
        self.outcome()
    }
}

/// The first transfer coding other than `chunked` (which the HTTP client decodes), if any.
fn unknown_transfer_coding(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .find(|c| !c.is_empty() && c != "chunked")
}
