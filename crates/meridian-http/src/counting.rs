//! An upstream pool that counts the connections it opens, so connection reuse can be
//! measured (requests per new connection) instead of assumed.

use crate::body::Body;
use crate::upstream_tls::{OriginTls, UpstreamConn};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// An [`HttpConnector`] that adds one to `opened` per connection it establishes, and
/// speaks TLS to `https://` URIs when it has an [`OriginTls`].
#[derive(Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    opened: Arc<AtomicU64>,
    tls: Option<OriginTls>,
}

impl tower_service::Service<http::Uri> for CountingConnector {
    type Response = UpstreamConn;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let opened = self.opened.clone();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let tls = self.tls.clone();
        let addr = uri
            .authority()
            .and_then(|a| a.as_str().parse::<std::net::SocketAddr>().ok());
        let fut = self.inner.call(uri);
        Box::pin(async move {
            let tcp = fut.await?;
            let conn = match (https, tls, addr) {
                (false, _, _) => UpstreamConn::Plain(tcp),
                (true, Some(tls), Some(addr)) => tls.handshake(addr, tcp.into_inner()).await?,
                (true, None, _) => return Err("this pool has no TLS configuration".into()),
                (true, _, None) => {
                    return Err("an https origin is addressed by IP address and port".into())
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            Ok(conn)
        })
    }
}

pub type CountedUpstreamClient = Client<CountingConnector, Body>;

/// A keep-alive pool like [`crate::upstream_client`] whose new connections are counted,
/// leaving from `local` when given, with TLS to `https://` URIs when `tls` is given.
pub fn counted_upstream_client(
    connect_timeout: Duration,
    idle_timeout: Duration,
    local: Option<std::net::IpAddr>,
    opened: Arc<AtomicU64>,
    tls: Option<OriginTls>,
) -> CountedUpstreamClient {
    counted(connect_timeout, idle_timeout, local, opened, tls, false)
}

/// [`counted_upstream_client`] speaking HTTP/2 only: h2c with prior knowledge on plain
/// connections, h2 by ALPN over TLS (the TLS config offers only `h2`). For gRPC, whose
/// trailers and streams HTTP/1.1 does not carry.
pub fn counted_upstream_client_h2(
    connect_timeout: Duration,
    idle_timeout: Duration,
    local: Option<std::net::IpAddr>,
    opened: Arc<AtomicU64>,
    tls: Option<OriginTls>,
) -> CountedUpstreamClient {
    let tls = tls.map(|t| t.with_alpn(vec![b"h2".to_vec()]));
    counted(connect_timeout, idle_timeout, local, opened, tls, true)
}

fn counted(
    connect_timeout: Duration,
    idle_timeout: Duration,
    local: Option<std::net::IpAddr>,
    opened: Arc<AtomicU64>,
    tls: Option<OriginTls>,
    h2: bool,
) -> CountedUpstreamClient {
    let mut inner = crate::upstream::upstream_connector(connect_timeout, local);
    // The scheme is checked in `call`: https goes through the TLS handshake there.
    inner.enforce_http(tls.is_none());
    let mut pool = crate::upstream::upstream_pool(idle_timeout, 512);
    pool.http2_only(h2);
    pool.build(CountingConnector { inner, opened, tls })
}
