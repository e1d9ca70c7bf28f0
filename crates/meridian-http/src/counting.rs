//! An upstream pool that counts the connections it opens, so connection reuse can be
//! measured (requests per new connection) instead of assumed.

use crate::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// An [`HttpConnector`] that adds one to `opened` per connection it establishes.
#[derive(Clone)]
pub struct CountingConnector {
    inner: HttpConnector,
    opened: Arc<AtomicU64>,
}

impl tower_service::Service<http::Uri> for CountingConnector {
    type Response = <HttpConnector as tower_service::Service<http::Uri>>::Response;
    type Error = <HttpConnector as tower_service::Service<http::Uri>>::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let opened = self.opened.clone();
        let fut = self.inner.call(uri);
        Box::pin(async move {
            let conn = fut.await?;
            opened.fetch_add(1, Ordering::Relaxed);
            Ok(conn)
        })
    }
}

pub type CountedUpstreamClient = Client<CountingConnector, Body>;

/// A keep-alive pool like [`crate::upstream_client`] whose new connections are counted,
/// leaving from `local` when given.
pub fn counted_upstream_client(
    connect_timeout: Duration,
    idle_timeout: Duration,
    local: Option<std::net::IpAddr>,
    opened: Arc<AtomicU64>,
) -> CountedUpstreamClient {
    let inner = crate::upstream_connector(connect_timeout, local);
    crate::upstream_pool(idle_timeout, 512).build(CountingConnector { inner, opened })
}
