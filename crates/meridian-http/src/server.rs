//! The accept loop every listener shares (connection cap, eviction of the idlest, TLS
//! handshake, drain), and the two ways a connection is then served: hyper's server for
//! hyper services ([`serve_conns`]), or hyper's HTTP/1.1 and our own HTTP/2 for
//! [`Handler`]s ([`serve_handlers`]), which can send interim responses over both.

use crate::body::BoxError;
use crate::conn;
use crate::grace_timer::GraceTimer;
use crate::h1_server::{Closing, H1Settings};
use crate::h2_server::H2Settings;
use crate::handler::Handler;
use crate::interim::{self, InterimConn};
use crate::rewind::Rewind;
use bytes::Bytes;
use http::Response;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

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
    /// GOAWAY): an idle HTTP/2 client otherwise holds its connection forever. An HTTP/1
    /// answer's write that the client takes nothing of for this long ends the connection.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged, so a peer that vanished without closing
    /// (a dead machine, a cut path) is noticed; None for never.
    pub h2_keep_alive_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is closed.
    pub h2_keep_alive_timeout: Duration,
    /// Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub h2_max_concurrent_streams: u32,
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
            h2_max_concurrent_streams: 200,
        }
    }
}

impl ServerOptions {
    /// An instance behind a balancer (a deployment's service node; not the standalone
    /// `demo-origin`, which may face anyone). Its HTTP/2 clients are balancers, which carry
    /// every client's WebSocket to a `websocket_streams` group as a stream of one
    /// connection (RFC 8441): there a stream limit is a limit on tunnels, so it is as high
    /// as the connection cap. Only the balancer should reach such a node: each stream may
    /// buffer up to hyper's send buffer for a client that does not read.
    pub fn for_instance() -> Self {
        let opts = ServerOptions::default();
        ServerOptions {
            h2_max_concurrent_streams: opts.max_connections as u32,
            ..opts
        }
    }
}

impl ServerOptions {
    /// The request head limit hyper's parsers get (never under their 8 KiB floor).
    fn head_limit(&self) -> usize {
        self.max_header_bytes.max(8192)
    }

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

/// What serving one accepted connection needs besides its transport and peer.
struct Conn {
    activity: Arc<conn::Activity>,
    hints: Arc<interim::Shared>,
    idle: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Conn {
    /// `service` counted in flight, and opening each HTTP/1.1 request to interim heads.
    fn tracked<S>(&self, service: S) -> conn::Tracked<S> {
        conn::Tracked::new(service, self.activity.clone(), self.hints.clone())
    }

    /// The transport as hyper takes it, writing interim heads ahead of hyper's writes.
    fn hyper_io<IO>(&self, io: IO) -> TokioIo<interim::InterimIo<IO>> {
        TokioIo::new(interim::InterimIo::new(io, self.hints.clone()))
    }

    /// Serves `served` to its end, closing it with `graceful` on shutdown or idleness.
    async fn run<C, G, E>(self, served: Pin<Box<C>>, graceful: G) -> Result<(), BoxError>
    where
        C: Future<Output = Result<(), E>>,
        E: Into<BoxError>,
        G: Fn(Pin<&mut C>),
    {
        conn::run(served, graceful, &self.activity, self.idle, self.stop).await
    }
}

/// How a server answers a connection once it is accepted (and its TLS handshake done).
trait Protocols: Clone + Send + Sync + 'static {
    /// `h2`: what ALPN chose over TLS; None over plain TCP, where the bytes tell.
    fn serve_conn<IO>(
        &self,
        io: IO,
        h2: Option<bool>,
        peer: Peer,
        conn: Conn,
    ) -> impl Future<Output = Result<(), BoxError>> + Send
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// Serves HTTP/1.1 and HTTP/2 with hyper on `listener` until `shutdown` completes, then
/// stops accepting and lets open requests finish for up to `opts.drain`. With `tls`,
/// HTTP/2 is chosen by ALPN, else HTTP/1.1; `make` builds each connection's service.
pub async fn serve_conns<M, S, B>(
    listener: TcpListener,
    opts: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    make: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(Peer) -> S + Clone + Send + Sync + 'static,
    S: Service<http::Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(GraceTimer)
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.head_limit());
    builder
        .http2()
        .timer(GraceTimer)
        .max_header_list_size(opts.head_limit() as u32)
        .max_concurrent_streams(opts.h2_max_concurrent_streams)
        // RFC 8441: WebSockets over HTTP/2 (`upgrade.rs` takes the extended CONNECT).
        .enable_connect_protocol()
        .keep_alive_interval(opts.h2_keep_alive_interval)
        .keep_alive_timeout(opts.h2_keep_alive_timeout);
    let protocols = HyperProtocols {
        builder: Arc::new(builder),
        make,
    };
    accept_loop(listener, opts, tls, protocols, shutdown).await
}

/// [`serve_conns`] for a [`Handler`]: HTTP/1.1 by hyper, HTTP/2 by our own server
/// (`h2_server.rs`), so interim responses (103 Early Hints) reach viewers of both.
pub async fn serve_handlers<M, H>(
    listener: TcpListener,
    opts: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    make: M,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(Peer) -> H + Clone + Send + Sync + 'static,
    H: Handler,
{
    let mut hyper = hyper::server::conn::http1::Builder::new();
    hyper
        .timer(GraceTimer)
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.head_limit());
    let protocols = HandlerProtocols {
        h1: Arc::new(H1Settings {
            hyper,
            head_timeout: opts.header_read_timeout,
            head_limit: opts.head_limit(),
            write_stall: opts.idle_timeout,
        }),
        h2: H2Settings {
            max_header_list_size: opts.head_limit() as u32,
            keep_alive_interval: opts.h2_keep_alive_interval,
            keep_alive_timeout: opts.h2_keep_alive_timeout,
            handshake_timeout: opts.header_read_timeout,
            write_stall: opts.idle_timeout,
        },
        head_timeout: opts.header_read_timeout,
        make,
    };
    accept_loop(listener, opts, tls, protocols, shutdown).await
}

#[derive(Clone)]
struct HyperProtocols<M> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    make: M,
}

impl<M, S, B> Protocols for HyperProtocols<M>
where
    M: Fn(Peer) -> S + Clone + Send + Sync + 'static,
    S: Service<http::Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn serve_conn<IO>(
        &self,
        io: IO,
        _: Option<bool>,
        peer: Peer,
        c: Conn,
    ) -> Result<(), BoxError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = c.tracked((self.make)(peer));
        let served = self
            .builder
            .serve_connection_with_upgrades(c.hyper_io(io), service);
        c.run(Box::pin(served), |s| s.graceful_shutdown()).await
    }
}

#[derive(Clone)]
struct HandlerProtocols<M> {
    h1: Arc<H1Settings>,
    h2: H2Settings,
    head_timeout: Duration,
    make: M,
}

impl<M, H> Protocols for HandlerProtocols<M>
where
    M: Fn(Peer) -> H + Clone + Send + Sync + 'static,
    H: Handler,
{
    async fn serve_conn<IO>(
        &self,
        io: IO,
        h2: Option<bool>,
        peer: Peer,
        c: Conn,
    ) -> Result<(), BoxError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (io, h2) = match h2 {
            Some(h2) => (Rewind::new(io, Bytes::new()), h2),
            // Until its first bytes come, a connection is idle: it gives way at the
            // connection cap and to a stopping server.
            None => {
                let mut stop = c.stop.clone();
                tokio::select! {
                    sniffed = crate::grace_timer::within(self.head_timeout, sniff(io)) => match sniffed {
                        Some(Ok(sniffed)) => sniffed,
                        // Closed, failed, or silent past the head timeout.
                        _ => return Ok(()),
                    },
                    _ = c.activity.evicted() => return Ok(()),
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
            }
        };
        let handler = (self.make)(peer);
        if h2 {
            let close = Arc::new(tokio::sync::Notify::new());
            let served = Box::pin(crate::h2_server::serve(
                io,
                handler,
                self.h2.clone(),
                c.activity.clone(),
                close.clone(),
            ));
            return c.run(served, |_| close.notify_one()).await;
        }
        let closing = Arc::new(Closing::default());
        let served = Box::pin(crate::h1_server::serve(
            io,
            handler,
            self.h1.clone(),
            c.activity.clone(),
            c.hints.clone(),
            closing.clone(),
        ));
        c.run(served, |_| closing.close()).await
    }
}

/// The HTTP/2 connection preface a client with prior knowledge starts with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the first bytes tell HTTP/2's preface from an HTTP/1 request line; the
/// bytes read (usually the whole first request, in one read) are given back to whichever
/// protocol serves the connection.
async fn sniff<IO: AsyncRead + Unpin>(mut io: IO) -> std::io::Result<(Rewind<IO>, bool)> {
    let mut seen = bytes::BytesMut::with_capacity(4096);
    loop {
        if io.read_buf(&mut seen).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let n = seen.len().min(PREFACE.len());
        if seen[..n] != PREFACE[..n] {
            return Ok((Rewind::new(io, seen.freeze()), false));
        }
        if n == PREFACE.len() {
            return Ok((Rewind::new(io, seen.freeze()), true));
        }
    }
}

async fn accept_loop<P: Protocols>(
    listener: TcpListener,
    opts: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    protocols: P,
    shutdown: impl Future<Output = ()>,
) {
    let local = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let max_connections = opts
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let room = Arc::new(Semaphore::new(max_connections));
    let registry = Arc::new(conn::Registry::default());
    // Tells open connections to finish their requests and close.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    'serve: loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // At the cap, the connection idle longest makes room for the one that arrived;
        // when every one has a request in flight, the newcomer waits for one to end (and
        // the clients after it in the kernel's backlog, not in our memory).
        let permit = match room.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => loop {
                // Asked again while waiting: a busy connection may have gone idle since.
                registry.evict_idlest(opts.header_read_timeout);
                tokio::select! {
                    p = room.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => break 'serve,
                    },
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = &mut shutdown => break 'serve,
                }
            },
        };
        // Forget the connections that ended, so the set holds only live ones.
        while conns.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let protocols = protocols.clone();
        let stop = stop_rx.clone();
        let tls = tls.clone();
        let handshake_timeout = opts.header_read_timeout;
        let idle = opts.idle_timeout;
        let registry = registry.clone();
        conns.spawn(async move {
            let activity = Arc::new(conn::Activity::new(Some(permit), Some(addr.ip())));
            let _registered = registry.register(activity.clone());
            let hints = Arc::new(interim::Shared::default());
            let mut peer = Peer {
                addr,
                local,
                tls: None,
                interim: Some(InterimConn::http1(hints.clone())),
            };
            let conn = || Conn {
                activity: activity.clone(),
                hints: hints.clone(),
                idle,
                stop: stop.clone(),
            };
            let result = match tls {
                None => protocols.serve_conn(stream, None, peer, conn()).await,
                // Boxed: the handshake's state and a TLS stream are kilobytes, which a
                // plain connection's task would otherwise carry too (a boxed future is
                // freed when it ends, so an upgraded connection's task, which waits for its
                // tunnels below, keeps none of it either).
                Some(acceptor) => {
                    Box::pin(async move {
                        let accepted =
                            crate::grace_timer::within(handshake_timeout, acceptor.accept(stream))
                                .await;
                        let stream = match accepted {
                            Some(Ok(s)) => s,
                            Some(Err(e)) => {
                                tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                                return Ok(());
                            }
                            None => return Ok(()),
                        };
                        let session = stream.get_ref().1;
                        peer.tls = Some(match session.protocol_version() {
                            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                            _ => "TLS",
                        });
                        // Without ALPN, the first bytes tell (HTTP/2 with prior knowledge).
                        let h2 = session.alpn_protocol().map(|p| p == b"h2");
                        protocols.serve_conn(stream, h2, peer, conn()).await
                    })
                    .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %addr, error = %e, "connection ended with error");
            }
            // An upgraded connection's place is kept until its tunnels end.
            activity.tunnels_closed().await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a permit: all of them back means every connection closed.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = room.acquire_many(all) => {}
        _ = tokio::time::sleep(opts.drain) => {
            tracing::warn!("drain time over; closing remaining connections");
        }
    }
    conns.shutdown().await;
}
