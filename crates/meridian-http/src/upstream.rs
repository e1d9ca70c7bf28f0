//! How Meridian connects to upstreams: one connector and one pool policy, shared by the
//! plain and the counted clients.

use crate::body::Body;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// A keep-alive connection pool to upstreams (targets, origins).
pub type UpstreamClient = Client<HttpConnector, Body>;

pub fn upstream_client(connect_timeout: Duration, idle_timeout: Duration) -> UpstreamClient {
    upstream_pool(idle_timeout, 256).build(upstream_connector(connect_timeout, None))
}

/// A pool that speaks HTTP/2 to every upstream (h2c with prior knowledge on plain
/// connections): for targets of an ALB `http2` or `grpc` target group, where trailers and
/// streams need HTTP/2.
pub fn upstream_client_h2(connect_timeout: Duration, idle_timeout: Duration) -> UpstreamClient {
    let mut b = upstream_pool(idle_timeout, 256);
    b.http2_only(true);
    b.build(upstream_connector(connect_timeout, None))
}

/// How every upstream pool connects: plain HTTP, no Nagle, bounded connect time, from
/// `local` when given.
pub(crate) fn upstream_connector(
    connect_timeout: Duration,
    local: Option<std::net::IpAddr>,
) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_local_address(local);
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    connector
}

/// How every upstream pool keeps connections.
pub(crate) fn upstream_pool(
    idle_timeout: Duration,
    max_idle_per_host: usize,
) -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(max_idle_per_host);
    b
}
