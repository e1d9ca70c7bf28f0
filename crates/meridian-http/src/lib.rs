//! HTTP plumbing shared by the load balancer and (later) the edge: one way to listen, one
//! way to drain, one upstream pool. Proxies build on these instead of each wiring hyper.

use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use hyper::service::Service;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpListener;

pub mod admin;
pub mod audit;
mod body;
pub mod client;
mod conn;
mod counting;
mod date;
pub mod failover;
mod grace_timer;
pub mod grpc;
pub mod h1_client;
mod h1_head;
mod h1_server;
mod h2_io;
mod h2_server;
mod handler;
mod hop;
mod idle;
pub mod ids;
pub mod interim;
pub mod path;
pub mod percent;
pub mod pki;
pub mod received;
mod rewind;
mod secret_file;
pub mod secrets;
mod server;
pub mod signing;
pub mod tls;
pub mod upgrade;
mod upstream;
mod upstream_tls;
mod write_stall;
mod ws_handshake;
pub use body::{collected, empty, full, json, metrics, text, Body, BoxError};
pub use conn::TunnelHold;
pub use counting::{counted_upstream_client, counted_upstream_client_h2, CountedUpstreamClient};
pub use handler::Handler;
pub use hop::{connection_fields, is_hop_by_hop, strip_hop_by_hop, HOP_BY_HOP};
pub use idle::{Idle, IdleTimeout};
pub use server::{serve_conns, serve_handlers, Peer, ServerOptions};
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

/// The host a request names, as the client wrote it: its `Host` field (when it is text),
/// else the authority of its target (an absolute-form target, HTTP/2's `:authority`).
pub fn request_host(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()))
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
