//! Sending one request to an origin group: members in rank order, failing over inside
//! the viewer's request when it is safe to repeat.

use super::answer::{OriginFailure, OriginName, OriginResponse};
use super::group::Group;
use super::Origins;
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use std::time::Instant;

impl Origins {
    /// Sends a request to the group, trying members in rank order. A member that refuses
    /// the connection is passed over for any method; one that times out or answers with a
    /// failover status is passed over when the request is safe to repeat.
    pub async fn send(
        &self,
        group: &Group,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<OriginResponse, OriginFailure> {
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let order = group.ranked();
        let mut attempts = Vec::new();
        let mut all_timeouts = true;
        let mut last_bad: Option<OriginResponse> = None;
        for (n, &i) in order.iter().enumerate() {
            let m = &group.members[i];
            let more = n + 1 < order.len();
            let scheme = if m.tls { "https" } else { "http" };
            let uri = format!("{scheme}://{}{}", m.addr, path_and_query);
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if let Some(h) = req.headers_mut() {
                *h = headers.clone();
                // Signed with the Host the origin will see: the one set here, else the
                // member's address (hyper writes it from the URI).
                if let Some(s) = self.signer.get() {
                    let addr = m.addr.to_string();
                    let host = h
                        .get(http::header::HOST)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or(&addr)
                        .to_owned();
                    h.insert(
                        meridian_http::signing::HEADER,
                        s.sign(method, &host, path_and_query),
                    );
                }
            }
            let Ok(req) = req.body(meridian_http::full(body.clone())) else {
                attempts.push(format!("{}: the request could not be built", m.name));
                break;
            };
            let started = Instant::now();
            let labels =
                |outcome: &str| vec![("origin", m.name.clone()), ("outcome", outcome.to_owned())];
            match tokio::time::timeout(group.cfg.response_timeout, self.client.request(req)).await {
                Ok(Ok(res)) => {
                    let elapsed = started.elapsed();
                    self.m
                        .duration
                        .get_or_create(&vec![("origin", m.name.clone())])
                        .observe(elapsed.as_secs_f64());
                    let status = res.status().as_u16();
                    self.m
                        .requests
                        .get_or_create(&labels(&format!("{}xx", status / 100)))
                        .inc();
                    if group.cfg.failover_statuses.contains(&status) && safe && more {
                        attempts.push(format!("{}: answered {status}", m.name));
                        self.failover("status");
                        all_timeouts = false;
                        last_bad = Some(OriginResponse {
                            member: OriginName(m.name.clone()),
                            response: res,
                            elapsed,
                        });
                        continue;
                    }
                    return Ok(OriginResponse {
                        member: OriginName(m.name.clone()),
                        response: res,
                        elapsed,
                    });
                }
                Ok(Err(e)) => {
                    all_timeouts = false;
                    let connect = e.is_connect();
                    self.m
                        .requests
                        .get_or_create(&labels(if connect { "connect_error" } else { "io_error" }))
                        .inc();
                    attempts.push(format!("{}: {}", m.name, meridian_http::describe(&e)));
                    if connect {
                        self.board.report_failure(&m.key, "connection failed");
                    }
                    if !(connect || safe) {
                        break;
                    }
                    if more {
                        self.failover(if connect { "connect" } else { "io" });
                    }
                }
                Err(_) => {
                    self.m.requests.get_or_create(&labels("timeout")).inc();
                    // A member that holds a request past the timeout is treated as down
                    // until its health checks pass again, so the next viewers do not wait
                    // for it too (a frozen region costs one timeout, not one per request).
                    self.board
                        .report_failure(&m.key, "no response within the response timeout");
                    attempts.push(format!(
                        "{}: no response within {}",
                        m.name,
                        meridian_config::units::format_duration(group.cfg.response_timeout)
                    ));
                    if !safe {
                        break;
                    }
                    if more {
                        self.failover("timeout");
                    }
                }
            }
        }
        // Every member failed; the last one's own error answer is better than ours.
        if let Some(r) = last_bad {
            return Ok(r);
        }
        Err(OriginFailure {
            attempts,
            timed_out: all_timeouts,
        })
    }

    fn failover(&self, reason: &str) {
        self.m
            .failovers
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }
}
