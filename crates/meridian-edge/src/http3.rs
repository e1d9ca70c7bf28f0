//! HTTP/3 at the edge (`[distribution] http_version = "http2and3"`): QUIC on UDP at the
//! HTTPS listener's address and port, with its certificates, answered by the same
//! [`Edge::handle`] as HTTP/1.1 and HTTP/2, so routing, the cache, functions, protection
//! and logging cannot differ by protocol. Bodies stream both ways, frame by frame.
//! 0-RTT is off: early data could be replayed by anyone who saw it, and the pipeline has no
//! way to tell a replay from a request.

use crate::edge::Edge;
use crate::live::LiveEdge;
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use meridian_http::Peer;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// A QUIC connection with no packet for this long is closed (either side's idle time
/// counts; browsers keep theirs open with pings while they want them).
const IDLE: Duration = Duration::from_secs(30);

/// Requests one viewer connection may have open at once (HTTP/2's default on this edge too).
const MAX_STREAMS: u32 = 100;

/// The application close code of a connection ended on purpose (RFC 9114 §8.1).
const H3_NO_ERROR: quinn::VarInt = quinn::VarInt::from_u32(0x100);

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type RecvHalf = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;

/// Why the HTTP/3 listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum H3Error {
    #[error("the TLS config cannot be used for QUIC: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot listen for HTTP/3 on UDP {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The QUIC server config from the HTTPS listener's TLS config: the same certificates
/// (and SNI choice), ALPN `h3` only, TLS 1.3 (QUIC has no other), no early data.
pub fn server_config(tls: &rustls::ServerConfig) -> Result<quinn::ServerConfig, H3Error> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(quinn::IdleTimeout::try_from(IDLE).ok())
        .max_concurrent_bidi_streams(MAX_STREAMS.into())
        // A viewer opens no unidirectional streams but HTTP/3's control and QPACK ones.
        .max_concurrent_uni_streams(8u32.into());
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// Binds UDP `addr` for HTTP/3 (beside the HTTPS listener's TCP socket on the same port).
pub fn bind(addr: SocketAddr, tls: &rustls::ServerConfig) -> Result<quinn::Endpoint, H3Error> {
    quinn::Endpoint::server(server_config(tls)?, addr)
        .map_err(|source| H3Error::Bind { addr, source })
}

/// Serves HTTP/3 on `endpoint` until `shutdown`; then each connection is told (GOAWAY)
/// to open no more requests and those in flight get up to `drain` to finish.
pub(crate) async fn serve(
    endpoint: quinn::Endpoint,
    live: LiveEdge,
    opts: meridian_http::ServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let local = match endpoint.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("the HTTP/3 endpoint has no address: {e}");
            return;
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The same cap on connections as the TCP listeners: past it new ones are refused
    // (the viewer falls back to TCP) rather than served slowly.
    let slots = Arc::new(tokio::sync::Semaphore::new(opts.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            _ = &mut shutdown => break,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { break };
        // Once half the slots are taken, a source that has not proved its address (a
        // Retry's token) is asked to: spoofed handshakes then cost no slot, at one more
        // round trip for real viewers only while the PoP is that busy.
        let busy = slots.available_permits() < opts.max_connections.max(1) / 2;
        if busy && !incoming.remote_address_validated() && incoming.may_retry() {
            let _ = incoming.retry();
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            incoming.refuse();
            continue;
        };
        let (live, stop, opts) = (live.clone(), stop_rx.clone(), opts.clone());
        tokio::spawn(async move {
            connection(incoming, live, local, &opts, stop).await;
            drop(slot);
        });
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(opts.drain, endpoint.wait_idle()).await;
    endpoint.close(H3_NO_ERROR, b"shutting down");
}

/// One viewer's QUIC connection: its requests, each on a task of its own.
async fn connection(
    incoming: quinn::Incoming,
    live: LiveEdge,
    local: SocketAddr,
    opts: &meridian_http::ServerOptions,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // A handshake gets the time a TCP viewer gets for its request head: one that never
    // completes does not hold its slot until QUIC's idle timeout.
    let conn = match tokio::time::timeout(opts.header_read_timeout, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!("an HTTP/3 handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!("an HTTP/3 handshake did not complete in time");
            return;
        }
    };
    let peer = Peer {
        addr: conn.remote_address(),
        local,
        tls: Some("TLSv1.3"),
        interim: None,
    };
    let quic = conn.clone();
    // The same limit on a request head as over TCP.
    let mut h3 = match h3::server::builder()
        .max_field_section_size(opts.max_header_bytes as u64)
        .build::<_, Bytes>(h3_quinn::Connection::new(conn))
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(peer = %peer.addr, "an HTTP/3 connection failed to start: {e}");
            return;
        }
    };
    // As the TCP listeners' service: the distribution current when a request arrives,
    // checked with one atomic load.
    let (seen, edge) = live.snapshot();
    let mut requests = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = h3.accept() => a,
            Some(_) = requests.join_next(), if !requests.is_empty() => continue,
            _ = stop.changed() => {
                // Shutting down: no new requests (GOAWAY), those in flight finish (the
                // endpoint bounds that by the drain time), then the connection closes,
                // idle or not, as an idle HTTP/1.1 or HTTP/2 connection is closed.
                // The GOAWAY names the stream after the last one accepted: every request
                // accepted is finished here, so no client may send it again elsewhere.
                let _ = h3.shutdown(1).await;
                while requests.join_next().await.is_some() {}
                quic.close(H3_NO_ERROR, b"shutting down");
                return;
            }
        };
        match accepted {
            Ok(Some(resolver)) => {
                let edge = if live.generation() == seen {
                    edge.clone()
                } else {
                    live.now()
                };
                requests.spawn(request(
                    resolver,
                    edge,
                    peer.clone(),
                    opts.header_read_timeout,
                ));
            }
            Ok(None) => break,
            Err(e) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(peer = %peer.addr, "an HTTP/3 connection ended: {e}");
                }
                break;
            }
        }
    }
    // Answers still being sent finish (or fail on their own) before the tasks go.
    while requests.join_next().await.is_some() {}
}

/// One request: read its head (within `head_timeout`, as over TCP), answer it through the
/// pipeline, stream the answer back.
async fn request(resolver: Resolver, edge: Edge, peer: Peer, head_timeout: Duration) {
    let head = tokio::time::timeout(head_timeout, resolver.resolve_request()).await;
    let (req, stream) = match head {
        Ok(Ok(r)) => r,
        Err(_) => {
            tracing::debug!(peer = %peer.addr, "an HTTP/3 request head did not arrive in time");
            return;
        }
        Ok(Err(e)) => {
            // A malformed or reset request stream: that stream alone is lost.
            tracing::debug!(peer = %peer.addr, "an HTTP/3 request could not be read: {e}");
            return;
        }
    };
    let (mut send, recv) = stream.split();
    let head_only = req.method() == http::Method::HEAD;
    let hint = content_length(req.headers());
    let req = req.map(|()| RequestBody::new(recv, hint));
    // Interim heads (103 Early Hints) from the origin go out on this stream as they come,
    // each a HEADERS frame ahead of the final one (RFC 9114 §4.1).
    let (interim, hints) = meridian_http::interim::InterimConn::stream();
    // However this ends, no head is queued for the stream after it.
    let hints = meridian_http::interim::ClosingHints(hints);
    let handled = edge.handle(
        req,
        Peer {
            interim: Some(interim),
            ..peer
        },
    );
    tokio::pin!(handled);
    let res = loop {
        tokio::select! {
            // Hints first: one that arrived with the answer goes out before it.
            biased;
            heads = hints.0.next() => {
                for head in heads {
                    send_hint(&mut send, head, &peer).await;
                }
            }
            res = &mut handled => break res,
        }
    };
    hints.0.close();
    for head in hints.0.drain() {
        send_hint(&mut send, head, &peer).await;
    }
    drop(hints);
    let (mut parts, mut body) = res.into_parts();
    meridian_http::received::settle(&mut parts);
    // Connection-specific fields are malformed in HTTP/3 (RFC 9114 §4.2).
    meridian_http::strip_hop_by_hop(&mut parts.headers);
    let bodyless = head_only
        || parts.status.is_informational()
        || parts.status == http::StatusCode::NO_CONTENT
        || parts.status == http::StatusCode::NOT_MODIFIED;
    if send
        .send_response(http::Response::from_parts(parts, ()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(frame) = if bodyless { None } else { body.frame().await } {
        match frame {
            Ok(frame) => {
                let sent = match frame.into_data() {
                    Ok(data) if data.is_empty() => Ok(()),
                    Ok(data) => send.send_data(data).await,
                    Err(frame) => match frame.into_trailers() {
                        Ok(t) => send.send_trailers(t).await,
                        Err(_) => Ok(()),
                    },
                };
                // The viewer went away (or reset the stream): stop reading the body.
                if sent.is_err() {
                    return;
                }
            }
            Err(e) => {
                // A body that failed midway must not look complete to the viewer.
                tracing::debug!(peer = %peer.addr, "an HTTP/3 response body failed: {e}");
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return;
            }
        }
    }
    let _ = send.finish().await;
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A request's body as the HTTP/3 stream delivers it: DATA frames, then trailers.
struct RequestBody {
    /// In a mutex only so the body is `Sync` like hyper's (the pipeline's bodies are); it
    /// is reached through `get_mut`, never locked.
    recv: std::sync::Mutex<RecvHalf>,
    data_done: bool,
    done: bool,
    hint: SizeHint,
    /// The request's `Content-Length`, and the bytes of DATA so far.
    declared: Option<u64>,
    received: u64,
}

/// Why a request body over HTTP/3 could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Stream(#[from] h3::error::StreamError),
    /// RFC 9114 §4.1.2: a request whose DATA does not add up to its `Content-Length` is
    /// malformed (over TCP the framing itself is the length; here the viewer states it).
    #[error("the body's {received} bytes do not match its Content-Length of {declared}")]
    Length { declared: u64, received: u64 },
}

impl RequestBody {
    fn new(recv: RecvHalf, length: Option<u64>) -> Self {
        RequestBody {
            recv: std::sync::Mutex::new(recv),
            data_done: false,
            done: false,
            hint: length.map_or_else(SizeHint::default, SizeHint::with_exact),
            declared: length,
            received: 0,
        }
    }
}

/// The length error, when the DATA so far (`received`) is more than `declared` or, at its
/// end, less.
fn length_error(declared: Option<u64>, received: u64, at_end: bool) -> Option<BodyError> {
    let declared = declared?;
    let wrong = received > declared || (at_end && received != declared);
    wrong.then_some(BodyError::Length { declared, received })
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let recv = this.recv.get_mut().unwrap_or_else(|p| p.into_inner());
        if !this.data_done {
            match ready!(recv.poll_recv_data(cx)) {
                Ok(Some(mut buf)) => {
                    let data = buf.copy_to_bytes(buf.remaining());
                    this.received += data.len() as u64;
                    if let Some(e) = length_error(this.declared, this.received, false) {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) => {
                    this.data_done = true;
                    if let Some(e) = length_error(this.declared, this.received, true) {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
        let trailers = ready!(recv.poll_recv_trailers(cx));
        this.done = true;
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// One interim head as a HEADERS frame ahead of the answer's. A hint is a hint: one the
/// stream cannot take (too large for the viewer's limit) is skipped; a broken stream shows
/// on the answer.
async fn send_hint<S>(
    send: &mut h3::server::RequestStream<S, Bytes>,
    head: meridian_http::interim::InterimHead,
    peer: &Peer,
) where
    S: h3::quic::SendStream<Bytes>,
{
    let mut hint = http::Response::new(());
    *hint.status_mut() = head.status;
    *hint.headers_mut() = head.headers;
    if let Err(e) = send.send_response(hint).await {
        tracing::debug!(peer = %peer.addr, "an HTTP/3 hint was not sent: {e}");
    }
}
