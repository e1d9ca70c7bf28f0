//! WebSockets through a proxy: one implementation for the PoP and the balancer.
//!
//! A proxy strips `Upgrade` and `Connection` as hop-by-hop, which turns a WebSocket
//! handshake into a plain GET. A proxy that carries WebSockets instead takes the viewer's
//! upgrade aside ([`WsUpgrade::take`]), puts the handshake headers back on the request it
//! sends upstream ([`WsUpgrade::restore`]), and when the upstream answers 101 answers the
//! viewer 101 and joins the two upgraded connections ([`switch`]). Any other answer is an
//! ordinary response, relayed as one.
//!
//! An HTTP/2 viewer opens a WebSocket with an extended CONNECT (RFC 8441: `:method CONNECT`,
//! `:protocol websocket`) on one stream of its connection. The proxy takes it as the same
//! handshake (a GET to the rest of the request path), asks the upstream over HTTP/1.1 with a
//! key of its own, and on the upstream's 101 answers the stream 200 and joins the stream to
//! the upstream connection: the WebSocket frames are the same bytes either way.
//!
//! Towards an upstream that speaks HTTP/2 (a balancer's `http2` target group) the handshake
//! goes the other way: an extended CONNECT stream on the upstream's one connection
//! ([`WsUpgrade::restore_h2`]), whose 200 opens the tunnel; an HTTP/1.1 viewer gets its 101
//! with the accept its own key calls for, which no upstream computed.

use crate::body::Body;
pub use crate::ws_handshake::{accept_for, is_extended_connect, is_websocket_upgrade};
use crate::ws_handshake::{
    fresh_key, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
};
use http::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use http::{Method, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use meridian_telemetry::prometheus_client::metrics::counter::Counter;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// How long a draining tunnel waits for the upstream to finish the frame it is sending
/// before the connection is cut without a close frame.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long the other direction may go on after one side of a tunnel has closed.
const LINGER: Duration = Duration::from_secs(1);

/// The close frame a draining proxy sends the viewer: opcode 0x8, FIN, unmasked (server to
/// client), status 1001 "going away", so the client reconnects rather than reports an error.
pub const GOING_AWAY: &[u8] = &[
    0x88, 12, 0x03, 0xE9, b'g', b'o', b'i', b'n', b'g', b' ', b'a', b'w', b'a', b'y',
];

/// An extended CONNECT stream of our HTTP/2 server, handed over once the answer that
/// opens the tunnel is sent.
/// (A request extension must be Clone; the first to take it has it.)
#[derive(Clone)]
pub struct H2Upgrade(Arc<Mutex<Option<oneshot::Receiver<crate::h2_io::H2Io>>>>);

impl H2Upgrade {
    pub(crate) fn new(rx: oneshot::Receiver<crate::h2_io::H2Io>) -> Self {
        H2Upgrade(Arc::new(Mutex::new(Some(rx))))
    }

    async fn stream(self) -> Result<crate::h2_io::H2Io, &'static str> {
        let rx = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match rx {
            Some(rx) => rx
                .await
                .map_err(|_| "the stream closed before the tunnel opened"),
            None => Err("the stream was taken already"),
        }
    }
}

/// Where the viewer's side of a tunnel comes from.
enum ViewerSide {
    Hyper(OnUpgrade),
    H2(H2Upgrade),
}

/// A viewer's WebSocket handshake, taken aside before the request is made canonical.
pub struct WsUpgrade {
    on: ViewerSide,
    /// Opened by an HTTP/2 extended CONNECT (answered 200), not an HTTP/1.1 GET (101).
    extended_connect: bool,
    /// The `Sec-WebSocket-*` fields (key, version, protocol, extensions) as the viewer sent
    /// them: a header policy must not drop the key the upstream's accept is computed from.
    handshake: HeaderMap,
    /// The viewer connection's place under its server's connection cap, held by the
    /// tunnel: tunnels count against the cap like the connections they were.
    hold: Option<crate::conn::TunnelHold>,
}

impl std::fmt::Debug for WsUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsUpgrade").finish_non_exhaustive()
    }
}

impl WsUpgrade {
    /// Takes the upgrade out of a request that is a WebSocket handshake; None (and the
    /// request untouched) for every other request.
    /// An HTTP/2 extended CONNECT becomes a GET here, so every later phase (behaviors,
    /// allowed methods, protection, functions) sees the handshake as an HTTP/1.1 one.
    pub fn take(parts: &mut http::request::Parts) -> Option<WsUpgrade> {
        let extended_connect = is_extended_connect(parts);
        if !extended_connect && !is_websocket_upgrade(&parts.method, parts.version, &parts.headers)
        {
            return None;
        }
        let on = match parts.extensions.remove::<OnUpgrade>() {
            Some(on) => ViewerSide::Hyper(on),
            None => ViewerSide::H2(parts.extensions.remove::<H2Upgrade>()?),
        };
        if extended_connect {
            parts.method = Method::GET;
            parts.extensions.remove::<hyper::ext::Protocol>();
            parts.extensions.remove::<h2::ext::Protocol>();
        }
        let mut handshake = HeaderMap::new();
        for (n, v) in &parts.headers {
            if n.as_str().starts_with("sec-websocket-") {
                handshake.append(n.clone(), v.clone());
            }
        }
        Some(WsUpgrade {
            on,
            extended_connect,
            handshake,
            hold: parts.extensions.remove::<crate::conn::TunnelHold>(),
        })
    }

    /// Whether the viewer opened it with an HTTP/2 extended CONNECT (RFC 8441).
    pub fn is_extended_connect(&self) -> bool {
        self.extended_connect
    }

    /// Puts the handshake back on the headers of an HTTP/2 extended CONNECT sent upstream:
    /// the version, subprotocols and extensions, without the key and the HTTP/1.1 upgrade
    /// fields (RFC 8441 §4). The request itself must be a CONNECT with the `websocket`
    /// protocol (`hyper::ext::Protocol`).
    pub fn restore_h2(&self, headers: &mut HeaderMap) {
        for n in self.handshake.keys() {
            headers.remove(n);
        }
        for (n, v) in &self.handshake {
            if n != SEC_WEBSOCKET_KEY {
                headers.append(n.clone(), v.clone());
            }
        }
        if !headers.contains_key(SEC_WEBSOCKET_VERSION) {
            headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
    }

    /// Puts the handshake back on the headers of the request sent upstream (after
    /// hop-by-hop stripping and header policies).
    pub fn restore(&self, headers: &mut HeaderMap) {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        for n in self.handshake.keys() {
            headers.remove(n);
        }
        for (n, v) in &self.handshake {
            headers.append(n.clone(), v.clone());
        }
        // RFC 8441 has no key (the stream is the proof); the HTTP/1.1 upstream needs one.
        if self.extended_connect {
            headers.insert(SEC_WEBSOCKET_KEY, fresh_key());
            if !headers.contains_key(SEC_WEBSOCKET_VERSION) {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
        }
    }
}

/// Marks the response [`switch`] made: the one answer that opens a tunnel. An HTTP/2
/// client takes any 2xx to an extended CONNECT as an open tunnel, so a proxy must never
/// send it another (`is_tunnel`).
#[derive(Debug, Clone, Copy)]
pub struct Tunneled;

/// Whether `res` is the answer that opened a tunnel.
pub fn is_tunnel<B>(res: &Response<B>) -> bool {
    res.extensions().get::<Tunneled>().is_some()
}

/// How one tunnel runs.
#[derive(Clone, Debug)]
pub struct TunnelOptions {
    /// No byte either way for this long closes both sides.
    pub idle: Duration,
    /// When this turns true the tunnel ends: a close frame (1001) to the viewer at the
    /// next frame boundary, then both connections closed.
    pub drain: Option<watch::Receiver<bool>>,
    /// Bytes from the viewer to the upstream.
    pub bytes_in: Counter,
    /// Bytes from the upstream to the viewer.
    pub bytes_out: Counter,
}

impl TunnelOptions {
    pub fn new(idle: Duration) -> Self {
        TunnelOptions {
            idle,
            drain: None,
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
        }
    }
}

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides closed (or one failed).
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// Drained: the viewer got a close frame.
    Drained,
    /// Drained, but the upstream stayed mid-frame: cut without a close frame.
    Cut,
    /// One side's upgrade never completed.
    NotUpgraded,
    /// The server needed its connection's place (at its connection cap).
    Evicted,
}

/// What a tunnel carried.
#[derive(Debug, Clone, Copy)]
pub struct TunnelStats {
    pub from_viewer: u64,
    pub to_viewer: u64,
    pub end: End,
}

/// The viewer's answer to an upstream's response to a forwarded handshake: on 101 (or a
/// 2xx to an extended CONNECT over HTTP/2), a 101 with the upstream's handshake headers,
/// and the tunnel spawned (it runs once hyper has sent the 101); `on_end` is called when
/// the tunnel ends, whatever the reason (also when no tunnel could be made after all: then
/// the answer is an error, not marked [`Tunneled`]). Any other status is given back, to be
/// relayed as an ordinary response.
pub fn switch<B>(
    viewer: WsUpgrade,
    mut upstream: Response<B>,
    opts: TunnelOptions,
    on_end: impl FnOnce(&TunnelStats) + Send + 'static,
) -> Result<Response<Body>, Response<B>> {
    // Over HTTP/2, an extended CONNECT's 200 opens the stream as a tunnel (hyper hands it
    // over as an upgrade); any other answer, or one to a plain request, is relayed.
    let upstream_h2 = upstream.version() == Version::HTTP_2;
    let opened = if upstream_h2 {
        upstream.status() == StatusCode::OK && upstream.extensions().get::<OnUpgrade>().is_some()
    } else {
        upstream.status() == StatusCode::SWITCHING_PROTOCOLS
    };
    if !opened {
        return Err(upstream);
    }
    let not_upgraded = TunnelStats {
        from_viewer: 0,
        to_viewer: 0,
        end: End::NotUpgraded,
    };
    let Some(up) = upstream.extensions_mut().remove::<OnUpgrade>() else {
        // A 101 the upstream connection cannot be taken over for (not HTTP/1.1).
        on_end(&not_upgraded);
        return Ok(crate::body::text(
            StatusCode::BAD_GATEWAY,
            "the upstream switched protocols on a connection that cannot be upgraded",
        ));
    };
    let mut res = Response::new(crate::body::empty());
    res.extensions_mut().insert(Tunneled);
    // RFC 8441 §5: an extended CONNECT succeeds with a 2xx, without the accept (there was
    // no key) and without the HTTP/1.1 upgrade fields, which HTTP/2 forbids.
    let h2 = viewer.extended_connect;
    *res.status_mut() = if h2 {
        StatusCode::OK
    } else {
        StatusCode::SWITCHING_PROTOCOLS
    };
    for (n, v) in upstream.headers() {
        let skip = crate::hop::is_hop_by_hop(n.as_str())
            || n == http::header::CONTENT_LENGTH
            || (h2 && n == SEC_WEBSOCKET_ACCEPT);
        if !skip {
            res.headers_mut().append(n.clone(), v.clone());
        }
    }
    if !h2 {
        res.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        res.headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        if upstream_h2 {
            // The stream had no key to answer: the viewer's is answered here (`take` keeps
            // only handshakes with a key, so the 400 is a guard).
            let Some(key) = viewer.handshake.get(SEC_WEBSOCKET_KEY) else {
                on_end(&not_upgraded);
                return Ok(crate::body::text(
                    StatusCode::BAD_REQUEST,
                    "a WebSocket handshake needs a Sec-WebSocket-Key",
                ));
            };
            res.headers_mut()
                .insert(SEC_WEBSOCKET_ACCEPT, accept_for(key.as_bytes()));
        }
    }
    let hold = viewer.hold;
    tokio::spawn(async move {
        // The connection's place, given back when the tunnel ends; the server may take it
        // back first (its cap reached, this tunnel busy longest).
        let evicted = async {
            match &hold {
                Some(h) => h.evicted().await,
                None => std::future::pending().await,
            }
        };
        let not_upgraded = |e: &dyn std::fmt::Display| {
            tracing::debug!(error = %e, "websocket upgrade did not complete");
            TunnelStats {
                from_viewer: 0,
                to_viewer: 0,
                end: End::NotUpgraded,
            }
        };
        let tunnel = async {
            match viewer.on {
                ViewerSide::Hyper(on) => match tokio::try_join!(on, up) {
                    Ok((v, u)) => relay(TokioIo::new(v), TokioIo::new(u), opts).await,
                    Err(e) => not_upgraded(&e),
                },
                ViewerSide::H2(h2) => match tokio::join!(h2.stream(), up) {
                    (Ok(v), Ok(u)) => relay(v, TokioIo::new(u), opts).await,
                    (Err(e), _) => not_upgraded(&e),
                    (_, Err(e)) => not_upgraded(&e),
                },
            }
        };
        let stats = tokio::select! {
            stats = tunnel => stats,
            _ = evicted => TunnelStats {
                from_viewer: 0,
                to_viewer: 0,
                end: End::Evicted,
            },
        };
        drop(hold);
        on_end(&stats);
    });
    Ok(res)
}

/// Relays bytes both ways until both sides close, nothing moves for `opts.idle`, or the
/// drain signal ends it. Each direction is its own loop, so a peer that does not read
/// never stops the other direction.
pub async fn relay<V, U>(viewer: V, upstream: U, opts: TunnelOptions) -> TunnelStats
where
    V: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    // Milliseconds from `start` to the last byte either way.
    let last = AtomicU64::new(0);
    let from_viewer = AtomicU64::new(0);
    let to_viewer = AtomicU64::new(0);
    let (mut vr, mut vw) = tokio::io::split(viewer);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let moved = |n: usize, total: &AtomicU64, c: &Counter| {
        last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        total.fetch_add(n as u64, Ordering::Relaxed);
        c.inc_by(n as u64);
    };
    let inbound = async {
        let mut buf = Buffer::default();
        loop {
            match vr.read(buf.space()).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    moved(n, &from_viewer, &opts.bytes_in);
                    if uw.write_all(buf.get(n)).await.is_err() {
                        break;
                    }
                    buf.filled(n);
                }
            }
        }
        let _ = uw.shutdown().await;
        End::Closed
    };
    let mut drain = opts.drain.clone();
    let outbound = async {
        let mut buf = Buffer::default();
        let mut frames = Frames::default();
        let mut cut_at: Option<Instant> = None;
        let end = loop {
            let read = tokio::select! {
                r = ur.read(buf.space()) => r,
                _ = drained(&mut drain), if cut_at.is_none() => {
                    if frames.at_boundary() {
                        let _ = vw.write_all(GOING_AWAY).await;
                        break End::Drained;
                    }
                    cut_at = Some(Instant::now() + DRAIN_GRACE);
                    continue;
                }
                _ = sleep_until(cut_at) => break End::Cut,
            };
            let n = match read {
                Ok(0) | Err(_) => break End::Closed,
                Ok(n) => n,
            };
            moved(n, &to_viewer, &opts.bytes_out);
            let mut data = buf.get(n);
            if cut_at.is_some() {
                // Draining: pass on the rest of the frame in flight, then the close frame.
                let k = frames.consume(data);
                if vw.write_all(&data[..k]).await.is_err() {
                    break End::Closed;
                }
                if frames.at_boundary() {
                    let _ = vw.write_all(GOING_AWAY).await;
                    break End::Drained;
                }
                continue;
            }
            while !data.is_empty() {
                let k = frames.consume(data);
                data = &data[k..];
            }
            if vw.write_all(buf.get(n)).await.is_err() {
                break End::Closed;
            }
            buf.filled(n);
        };
        let _ = vw.shutdown().await;
        end
    };
    let idle = async {
        loop {
            let due = start + Duration::from_millis(last.load(Ordering::Relaxed)) + opts.idle;
            if due <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    };
    tokio::pin!(inbound, outbound, idle);
    let (mut in_done, mut out_done) = (false, false);
    // Once one side has closed, the other has a moment to finish, not the idle timeout: a
    // WebSocket is over when either end leaves, and a viewer that never reads its EOF
    // must not hold the tunnel.
    let mut linger: Option<Instant> = None;
    let end = loop {
        tokio::select! {
            _ = &mut inbound, if !in_done => {
                in_done = true;
                if out_done { break End::Closed; }
                linger = Some(Instant::now() + LINGER);
            }
            e = &mut outbound, if !out_done => {
                out_done = true;
                // A drained tunnel does not wait for the viewer's close reply.
                if e != End::Closed || in_done { break e; }
                linger = Some(Instant::now() + LINGER);
            }
            _ = sleep_until(linger) => break End::Closed,
            _ = &mut idle => break End::Idle,
        }
    };
    TunnelStats {
        from_viewer: from_viewer.load(Ordering::Relaxed),
        to_viewer: to_viewer.load(Ordering::Relaxed),
        end,
    }
}

/// A tunnel direction's read buffer: small while little moves (a quote stream's frames
/// are a few hundred bytes, and an idle socket should cost little: thousands are held
/// open), doubled each time a read fills it, up to [`Buffer::MAX`].
struct Buffer(Vec<u8>);

impl Buffer {
    const MIN: usize = 1024;
    const MAX: usize = 16 * 1024;

    fn space(&mut self) -> &mut [u8] {
        &mut self.0
    }

    fn get(&self, n: usize) -> &[u8] {
        &self.0[..n]
    }

    /// A read took `n` bytes: a full buffer says more was waiting.
    fn filled(&mut self, n: usize) {
        if n == self.0.len() && self.0.len() < Self::MAX {
            self.0.resize(self.0.len() * 2, 0);
        }
    }
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer(vec![0; Self::MIN])
    }
}

/// Resolves when the drain signal turns true; never without one.
async fn drained(rx: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = rx {
        if rx.wait_for(|d| *d).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where the server-to-client byte stream is among WebSocket frames, so a close frame is
/// only ever written between two frames (RFC 6455 §5.4: control frames may come between
/// the fragments of a message, never inside a frame).
#[derive(Debug, Default)]
struct Frames {
    /// The current frame header's bytes so far (at most 14: 2, 8 of length, 4 of mask).
    head: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
}

impl Frames {
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// The header length once its first two bytes are known.
    fn head_len(&self) -> Option<usize> {
        if self.have < 2 {
            return None;
        }
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        Some(2 + ext + mask)
    }

    /// Consumes bytes of `data` up to the end of the current frame (or all of `data`);
    /// returns how many.
    fn consume(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() {
            if self.payload_left > 0 {
                let k = (data.len() - used).min(self.payload_left.min(usize::MAX as u64) as usize);
                self.payload_left -= k as u64;
                used += k;
                if self.payload_left == 0 {
                    return used;
                }
                continue;
            }
            self.head[self.have] = data[used];
            self.have += 1;
            used += 1;
            let Some(len) = self.head_len() else { continue };
            if self.have < len {
                continue;
            }
            let h = &self.head;
            self.payload_left = match h[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                n => u64::from(n),
            };
            self.have = 0;
            if self.payload_left == 0 {
                return used;
            }
        }
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_grows_only_when_reads_fill_it() {
        let mut b = Buffer::default();
        b.filled(100);
        assert_eq!(b.space().len(), Buffer::MIN);
        for _ in 0..10 {
            let n = b.space().len();
            b.filled(n);
        }
        assert_eq!(b.space().len(), Buffer::MAX);
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81];
        match payload.len() {
            n if n < 126 => f.push(n as u8),
            n if n <= 0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_boundaries_are_found_across_reads_of_any_size() {
        let mut stream = frame(b"hello");
        stream.extend(frame(&[7u8; 300]));
        stream.extend(frame(&[1u8; 70_000]));
        stream.extend(frame(b""));
        let ends = [7, 7 + 304, 7 + 304 + 70_010, 7 + 304 + 70_010 + 2];
        for chunk in [1, 3, 13, 1000, 100_000] {
            let mut f = Frames::default();
            let mut at = 0;
            let mut found = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut data = piece;
                while !data.is_empty() {
                    let k = f.consume(data);
                    at += k;
                    data = &data[k..];
                    if f.at_boundary() {
                        found.push(at);
                    }
                }
            }
            assert_eq!(found, ends, "chunk size {chunk}");
        }
    }

    #[tokio::test]
    async fn relay_counts_bytes_closes_when_idle_and_drains_with_a_close_frame() {
        // Idle: nothing moves, both ends see EOF after the timeout.
        let (v, mut v_peer) = tokio::io::duplex(1024);
        let (u, mut u_peer) = tokio::io::duplex(1024);
        let opts = TunnelOptions::new(Duration::from_millis(300));
        let t = tokio::spawn(relay(v, u, opts));
        v_peer.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        u_peer.read_exact(&mut b).await.unwrap();
        u_peer.write_all(&frame(b"pong")).await.unwrap();
        let mut f = [0u8; 6];
        v_peer.read_exact(&mut f).await.unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(3), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.end, End::Idle);
        assert_eq!((stats.from_viewer, stats.to_viewer), (4, 6));
        let mut rest = Vec::new();
        v_peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        // Drain mid-frame: the frame is finished first, then the close frame follows.
        let (v, mut v_peer) = tokio::io::duplex(1024);
        let (u, mut u_peer) = tokio::io::duplex(1024);
        let (tx, rx) = watch::channel(false);
        let mut opts = TunnelOptions::new(Duration::from_secs(30));
        opts.drain = Some(rx);
        let t = tokio::spawn(relay(v, u, opts));
        let whole = frame(b"half and half");
        u_peer.write_all(&whole[..5]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        u_peer.write_all(&whole[5..]).await.unwrap();
        u_peer.write_all(&frame(b"never sent")).await.unwrap();
        let stats = tokio::time::timeout(Duration::from_secs(3), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.end, End::Drained);
        let mut got = Vec::new();
        v_peer.read_to_end(&mut got).await.unwrap();
        let mut want = whole.clone();
        want.extend_from_slice(GOING_AWAY);
        assert_eq!(got, want);
    }
}
