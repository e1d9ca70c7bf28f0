//! HTTP plumbing shared by the load balancer and (later) the edge: one way to listen, one
//! way to drain, one upstream pool. Proxies build on these instead of each wiring hyper.

use bytes::Bytes;
use http::{header, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

pub mod admin;
pub mod audit;
mod body;
pub mod client;
mod conn;
mod counting;
pub mod failover;
pub mod grpc;
mod h2_server;
mod idle;
pub mod interim;
pub mod percent;
pub mod pki;
mod secret_file;
pub mod secrets;
mod server;
pub mod signing;
pub mod tls;
pub mod upgrade;
mod upstream;
mod upstream_tls;
pub use body::{collected, empty, full, json, metrics, text, Body, BoxError};
pub use counting::{counted_upstream_client, counted_upstream_client_h2, CountedUpstreamClient};
pub use h2_server::{H2Body, Handler};
pub use idle::{Idle, IdleTimeout};
pub use server::{serve_conns, serve_handlers};
pub use upstream::{upstream_client, upstream_client_h2, UpstreamClient};
pub use upstream_tls::{OriginTls, UpstreamConn};

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{hint}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
    hint: &'static str,
}

/// Binds a listener, explaining the usual causes when it fails.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| {
        let hint = match source.kind() {
            io::ErrorKind::AddrInUse => {
                " (another process holds it: is another deployment running? give this one its own [network] subnet)"
            }
            io::ErrorKind::AddrNotAvailable => {
                " (this address is not configured here; on Linux all of 127.0.0.0/8 is loopback, elsewhere add it as an alias)"
            }
            _ => "",
        };
        BindError { addr, source, hint }
    })
}

/// Limits that protect a listener from slow, idle, oversized or too many clients.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// A client must send its whole request head within this time. hyper also arms it
    /// while an HTTP/1 keep-alive connection waits for its next request, so it is that
    /// connection's idle limit too.
    pub header_read_timeout: Duration,
    /// Largest request head accepted; larger ones get 431.
    pub max_header_bytes: usize,
    /// How long in-flight requests may run after shutdown begins.
    pub drain: Duration,
    /// Connections served at once. At the cap the listener stops accepting until one
    /// closes: new clients wait in the kernel's backlog (and are served a moment later)
    /// instead of being accepted and dropped, which would turn a burst into errors.
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (HTTP/2 with a
    /// GOAWAY): an idle HTTP/2 client otherwise holds its connection forever.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged, so a peer that vanished without closing
    /// (a dead machine, a cut path) is noticed; None for never.
    pub h2_keep_alive_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed.
    pub h2_keep_alive_timeout: Duration,
}

impl Default for ServerOptions {
    /// A data plane's limits: 10,000 connections (a PoP or balancer with the usual
    /// `ulimit -n` of 20,000 or more keeps room for its upstream side), idle connections
    /// closed after a minute as ALB does.
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            drain: Duration::from_secs(5),
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Some(Duration::from_secs(20)),
            h2_keep_alive_timeout: Duration::from_secs(20),
        }
    }
}

impl ServerOptions {
    /// An admin endpoint's limits: a few operators and scrapers, never thousands of
    /// clients, and a short drain.
    pub fn admin() -> Self {
        ServerOptions {
            max_connections: 256,
            drain: Duration::from_millis(200),
            ..Default::default()
        }
    }
}

/// What a service learns about the connection it serves.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    /// The negotiated TLS version, when the connection is TLS.
    pub tls: Option<&'static str>,
    /// Where interim responses (103 Early Hints) for this connection's requests go.
    pub interim: Option<interim::InterimConn>,
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge) on `listener` until `shutdown` completes,
/// then stops accepting and lets open requests finish for up to `opts.drain`.
///
/// `make` builds the service for each connection from the peer address.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    opts: ServerOptions,
    make: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S + Clone + Send + Sync + 'static,
    S: Service<http::Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    serve_conns(listener, opts, None, move |p: Peer| make(p.addr), shutdown).await
}

/// A tower service (an axum `Router`) as a hyper one, so axum apps are served by
/// [`serve`] with its limits: each request goes to a clone, made ready first as tower asks.
#[derive(Debug, Clone)]
pub struct TowerService<S>(pub S);

impl<S, R> Service<R> for TowerService<S>
where
    S: tower_service::Service<R> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        let mut svc = self.0.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            svc.call(req).await
        })
    }
}

/// Headers that belong to one connection, not to the message (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.contains(&name)
}

/// The fields a message's Connection header names: they belong to that connection only.
pub fn connection_fields(headers: &http::HeaderMap) -> Vec<http::HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| http::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop headers, including the ones named in Connection, before a proxy
/// passes a message on.
pub fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for n in connection_fields(headers) {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
}

/// An upstream client error with every cause, for messages people read.
pub fn describe(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Resolves when SIGINT or SIGTERM arrives: how every node learns to stop.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
