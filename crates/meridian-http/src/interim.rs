//! Interim responses (RFC 9110 §15.2), 103 Early Hints (RFC 8297) above all: a proxy that
//! relays an origin's hints lets a browser fetch a page's style sheets and scripts while the
//! page itself is still being made.
//!
//! hyper's server sends no 1xx of a service's own (only its automatic 100 Continue), so a
//! served HTTP/1.1 connection runs over [`InterimIo`]: an interim head queued for the
//! request in flight is written to the socket before anything hyper writes after it, and
//! hyper is woken to flush it at once. A head is taken only while its request is the
//! connection's open one, so a late hint (from a hedged origin request that lost) can
//! never land inside another response. Protocols that frame their own streams (our HTTP/2
//! server, HTTP/3) take hints through a queue of the request's own instead
//! ([`InterimConn::stream`]).

use http::{HeaderMap, StatusCode};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Interim heads one request may send: hints are a handful of `Link` fields, and an
/// upstream that sends heads without end must not grow a proxy's memory with them.
const MAX_HEADS: usize = 8;
/// Bytes of interim heads one request may have queued.
const MAX_BYTES: usize = 16 * 1024;

/// Whether a request is a page navigation (it accepts HTML): browsers act on hints for
/// those only, and relaying costs each upstream request a callback, so proxies ask
/// upstreams for hints on these alone.
pub fn wants_hints(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::ACCEPT).iter().any(|v| {
        v.as_bytes()
            .windows(9)
            .any(|w| w.eq_ignore_ascii_case(b"text/html"))
    })
}

/// One interim head: its status (1xx, never 101) and fields.
#[derive(Debug, Clone)]
pub struct InterimHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl InterimHead {
    /// An upstream's interim head as a proxy relays it: 103 only (100 Continue belongs to
    /// its own hop, 101 is an upgrade), with its `Link` fields only: they are what a
    /// browser acts on, and anything else (a cookie, a backend's name) would pass the
    /// header rules that final answers go through.
    pub fn relayed(status: StatusCode, headers: &HeaderMap) -> Option<InterimHead> {
        if status != StatusCode::EARLY_HINTS {
            return None;
        }
        let mut links = HeaderMap::new();
        for v in headers.get_all(http::header::LINK) {
            links.append(http::header::LINK, v.clone());
        }
        if links.is_empty() {
            return None;
        }
        Some(InterimHead {
            status,
            headers: links,
        })
    }

    /// An interim status a server may send: 1xx, but not 101 (an upgrade is a final
    /// answer of its own).
    fn sendable(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }

    /// Roughly the bytes the head takes written out.
    fn size(&self) -> usize {
        32 + self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
    }

    /// The head as HTTP/1.1 writes it.
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(
            self.status
                .canonical_reason()
                .unwrap_or("Interim")
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\n");
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Where one connection's interim heads go.
#[derive(Clone)]
pub struct InterimConn(Kind);

#[derive(Clone)]
enum Kind {
    Http1(Arc<Shared>),
    Stream(Arc<StreamHints>),
}

impl std::fmt::Debug for InterimConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Http1(_) => "InterimConn::Http1",
            Kind::Stream(_) => "InterimConn::Stream",
        })
    }
}

impl InterimConn {
    /// For a protocol that writes interim heads itself, one request at a time (an HTTP/2
    /// or HTTP/3 request stream): the heads queue in the returned [`StreamHints`].
    pub fn stream() -> (InterimConn, Arc<StreamHints>) {
        let q = Arc::new(StreamHints::default());
        (InterimConn(Kind::Stream(q.clone())), q)
    }

    /// A handle for the request being served now when it is a page navigation
    /// ([`wants_hints`]): what a proxy asks its upstream's hints for.
    pub fn for_navigation(&self, headers: &HeaderMap) -> Option<Interim> {
        wants_hints(headers).then(|| self.current()).flatten()
    }

    /// A handle for the request being served now; None when interim heads cannot be sent
    /// to it (HTTP/2 and HTTP/1.0 requests on an HTTP/1 server connection: RFC 9110 §15.2
    /// forbids 1xx to HTTP/1.0 clients).
    pub fn current(&self) -> Option<Interim> {
        match &self.0 {
            Kind::Http1(s) => {
                let seq = s.open.load(Ordering::Acquire);
                if seq == 0 {
                    return None;
                }
                s.handed.store(true, Ordering::Release);
                Some(Interim(Target::Http1(s.clone(), seq)))
            }
            Kind::Stream(q) => Some(Interim(Target::Stream(q.clone()))),
        }
    }
}

/// Sends interim heads to one viewer request; cheap to clone into an upstream's callback.
#[derive(Clone)]
pub struct Interim(Target);

#[derive(Clone)]
enum Target {
    Http1(Arc<Shared>, u64),
    Stream(Arc<StreamHints>),
}

impl std::fmt::Debug for Interim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interim")
    }
}

impl Interim {
    /// Queues `head` ahead of the final response; false when that response has begun
    /// (or the viewer has gone), so the head was dropped.
    pub fn send(&self, head: InterimHead) -> bool {
        if !head.sendable() {
            return false;
        }
        match &self.0 {
            Target::Http1(s, seq) => s.push(*seq, &head),
            Target::Stream(q) => q.push(head),
        }
    }

    /// Relays an upstream client's interim response (hyper's `on_informational`).
    pub fn relay(&self, status: StatusCode, headers: &HeaderMap) {
        if let Some(head) = InterimHead::relayed(status, headers) {
            self.send(head);
        }
    }

    /// Asks the HTTP/1 client sending `req` to hand its interim responses to this viewer:
    /// hyper's takes a callback.
    /// Our own client (`h1_client`) finds it in the request's extensions.
    pub fn attach<B>(&self, req: &mut http::Request<B>) {
        req.extensions_mut().insert(self.clone());
        let to = self.clone();
        hyper::ext::on_informational(req, move |res| to.relay(res.status(), res.headers()));
    }
}

/// The interim heads queued for one request stream, until its final response begins.
#[derive(Default)]
pub struct StreamHints {
    queue: Mutex<HintQueue>,
    ready: tokio::sync::Notify,
}

#[derive(Default)]
struct HintQueue {
    queued: Vec<InterimHead>,
    /// Heads and bytes taken in all (the caps count every head, sent or not).
    heads: usize,
    bytes: usize,
    closed: bool,
}

impl StreamHints {
    fn push(&self, head: InterimHead) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.closed || q.heads >= MAX_HEADS || q.bytes + head.size() > MAX_BYTES {
            return false;
        }
        q.heads += 1;
        q.bytes += head.size();
        q.queued.push(head);
        drop(q);
        self.ready.notify_one();
        true
    }

    /// The heads queued since the last call, waiting for one if none is.
    pub async fn next(&self) -> Vec<InterimHead> {
        loop {
            let heads = self.drain();
            if !heads.is_empty() {
                return heads;
            }
            self.ready.notified().await;
        }
    }

    /// The heads queued now, without waiting: a hint that came with the answer (an
    /// upstream sends both in one write) still goes out before it.
    pub fn drain(&self) -> Vec<InterimHead> {
        std::mem::take(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()).queued)
    }

    /// The final response begins: no head is taken after this.
    pub fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    }
}

/// Closes its [`StreamHints`] when dropped, so a stream that ends any way at all (its
/// answer sent, the client gone, the task cancelled) takes no more heads.
pub struct ClosingHints(pub Arc<StreamHints>);

impl Drop for ClosingHints {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A hyper service whose requests carry their [`Interim`] as an extension, so that an
/// application's handlers (axum's `Extension<Interim>`) can send 103 Early Hints.
#[derive(Clone)]
pub struct WithInterim<S> {
    conn: Option<InterimConn>,
    inner: S,
}

impl<S> WithInterim<S> {
    /// `inner` on a connection whose interim heads go to `conn` (the listener's `Peer`
    /// has it).
    pub fn new(conn: Option<InterimConn>, inner: S) -> Self {
        WithInterim { conn, inner }
    }
}

impl<S, B> hyper::service::Service<http::Request<B>> for WithInterim<S>
where
    S: hyper::service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn call(&self, mut req: http::Request<B>) -> Self::Future {
        if let Some(interim) = self.conn.as_ref().and_then(InterimConn::current) {
            req.extensions_mut().insert(interim);
        }
        self.inner.call(req)
    }
}

/// The state an HTTP/1 connection's [`InterimIo`] and its requests share.
#[derive(Default)]
pub(crate) struct Shared {
    /// The open request's number (0: none). Requests on an HTTP/1 connection are served
    /// one at a time, so one number is enough.
    open: AtomicU64,
    next: AtomicU64,
    /// Set while `pending` holds bytes: the write path checks only this.
    queued: AtomicBool,
    /// A handle to the open request was given out (most requests, cache hits, never
    /// ask for one, and their end needs no lock).
    handed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The connection task, woken to write what was queued.
    waker: Option<Waker>,
    /// The request the heads counted here belong to, and how many it has sent.
    counted_for: u64,
    heads: usize,
}

impl Shared {
    /// A new HTTP/1.1 request is in flight; its number.
    pub(crate) fn begin(&self) -> u64 {
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.open.store(seq, Ordering::Release);
        seq
    }

    /// Request `seq` has its final response: nothing more is taken for it. Under the
    /// lock, so a head being queued either lands before the response or not at all.
    pub(crate) fn end(&self, seq: u64) {
        let _state = self
            .handed
            .swap(false, Ordering::AcqRel)
            .then(|| self.state.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = self
            .open
            .compare_exchange(seq, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    fn push(&self, seq: u64, head: &InterimHead) -> bool {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if self.open.load(Ordering::Acquire) != seq {
                return false;
            }
            if state.counted_for != seq {
                state.counted_for = seq;
                state.heads = 0;
            }
            if state.heads >= MAX_HEADS || state.pending.len() + head.size() > MAX_BYTES {
                return false;
            }
            state.heads += 1;
            head.encode(&mut state.pending);
            self.queued.store(true, Ordering::Release);
            state.waker.clone()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

impl InterimConn {
    pub(crate) fn http1(shared: Arc<Shared>) -> InterimConn {
        InterimConn(Kind::Http1(shared))
    }
}

pin_project_lite::pin_project! {
    /// A server connection's transport that writes queued interim heads first.
    pub(crate) struct InterimIo<T> {
        #[pin]
        inner: T,
        shared: Arc<Shared>,
        // Interim bytes taken from the queue and not yet written.
        writing: Vec<u8>,
        at: usize,
        // The connection's task is known (it stays the same for the connection's life).
        registered: bool,
        // hyper has written bytes it has not flushed yet: the message they belong to may
        // not be whole (hyper calls `poll_flush` only once its buffer is empty), so no
        // interim head goes out until then. With pipelining, the next request's handler
        // may run while the last answer's bytes still wait for the socket.
        mid_message: bool,
    }
}

impl<T> InterimIo<T> {
    pub(crate) fn new(inner: T, shared: Arc<Shared>) -> Self {
        InterimIo {
            inner,
            shared,
            writing: Vec::new(),
            at: 0,
            registered: false,
            mid_message: false,
        }
    }
}

impl<T: AsyncWrite> InterimIo<T> {
    /// Writes every queued interim byte; Ready once there are none left.
    fn poll_interim(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if *this.at == this.writing.len() {
            if !*this.registered {
                let mut state = this.shared.state.lock().unwrap_or_else(|p| p.into_inner());
                state.waker = Some(cx.waker().clone());
                *this.registered = true;
            }
            if !this.shared.queued.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            let mut state = this.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            this.writing.clear();
            std::mem::swap(this.writing, &mut state.pending);
            this.shared.queued.store(false, Ordering::Release);
            *this.at = 0;
        }
        while *this.at < this.writing.len() {
            let n = std::task::ready!(this
                .inner
                .as_mut()
                .poll_write(cx, &this.writing[*this.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *this.at += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead> AsyncRead for InterimIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for InterimIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.mid_message {
            std::task::ready!(self.as_mut().poll_interim(cx))?;
        }
        let this = self.project();
        let written = std::task::ready!(this.inner.poll_write(cx, buf))?;
        *this.mid_message |= written > 0;
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.mid_message {
            std::task::ready!(self.as_mut().poll_interim(cx))?;
        }
        let this = self.project();
        let written = std::task::ready!(this.inner.poll_write_vectored(cx, bufs))?;
        *this.mid_message |= written > 0;
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        *self.as_mut().project().mid_message = false;
        std::task::ready!(self.as_mut().poll_interim(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn hint() -> InterimHead {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::LINK,
            http::HeaderValue::from_static("</app.css>; rel=preload; as=style"),
        );
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        InterimHead::relayed(StatusCode::EARLY_HINTS, &headers).unwrap()
    }

    #[tokio::test]
    async fn a_queued_head_goes_out_before_the_response_and_only_while_its_request_is_open() {
        let (a, mut b) = tokio::io::duplex(4096);
        let shared = Arc::new(Shared::default());
        let conn = InterimConn::http1(shared.clone());
        let mut io = InterimIo::new(a, shared.clone());
        assert!(conn.current().is_none(), "no request open");
        let seq = shared.begin();
        let interim = conn.current().unwrap();
        assert!(interim.send(hint()));
        io.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        shared.end(seq);
        assert!(!interim.send(hint()), "taken after the final response");
        // The next request's handle does not take the old request's late hint.
        let next = shared.begin();
        assert!(!interim.send(hint()));
        shared.end(next);
        io.flush().await.unwrap();
        drop(io);
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        assert_eq!(
            got,
            "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload; as=style\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_flush_alone_writes_a_queued_head() {
        let (a, mut b) = tokio::io::duplex(4096);
        let shared = Arc::new(Shared::default());
        let mut io = InterimIo::new(a, shared.clone());
        let seq = shared.begin();
        assert!(InterimConn::http1(shared.clone())
            .current()
            .unwrap()
            .send(hint()));
        io.flush().await.unwrap();
        let mut got = vec![0u8; 80];
        let n = b.read(&mut got).await.unwrap();
        assert!(got[..n].starts_with(b"HTTP/1.1 103 Early Hints\r\n"));
        shared.end(seq);
    }

    /// Pipelining: the next request's hint waits for the bytes hyper wrote before it to
    /// be whole (hyper flushes once its buffer is empty), never lands among them.
    #[tokio::test]
    async fn a_hint_never_lands_inside_bytes_hyper_has_not_flushed() {
        let (a, mut b) = tokio::io::duplex(4096);
        let shared = Arc::new(Shared::default());
        let mut io = InterimIo::new(a, shared.clone());
        let first = shared.begin();
        shared.end(first);
        io.write_all(b"HTTP/1.1 304 Not Modified\r\n")
            .await
            .unwrap();
        // The next request opens and hints while the last answer is half written.
        let _next = shared.begin();
        let conn = InterimConn::http1(shared.clone());
        assert!(conn.current().unwrap().send(hint()));
        io.write_all(b"etag: \"x\"\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        io.flush().await.unwrap();
        drop(io);
        let mut got = String::new();
        b.read_to_string(&mut got).await.unwrap();
        assert_eq!(
            got,
            "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n\
             HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload; as=style\r\n\r\n\
             HTTP/1.1 200 OK\r\n\r\n"
        );
    }

    #[test]
    fn only_early_hints_are_relayed() {
        let h = HeaderMap::new();
        assert!(InterimHead::relayed(StatusCode::CONTINUE, &h).is_none());
        assert!(InterimHead::relayed(StatusCode::SWITCHING_PROTOCOLS, &h).is_none());
        assert!(!hint().headers.contains_key(http::header::CONNECTION));
        // Without a Link there is nothing to relay.
        let mut cookie = HeaderMap::new();
        cookie.insert(
            http::header::SET_COOKIE,
            http::HeaderValue::from_static("a=b"),
        );
        assert!(InterimHead::relayed(StatusCode::EARLY_HINTS, &cookie).is_none());
    }

    #[test]
    fn a_request_takes_a_few_heads_and_only_interim_ones() {
        let shared = Arc::new(Shared::default());
        let _seq = shared.begin();
        let interim = InterimConn::http1(shared.clone()).current().unwrap();
        let sent = (0..100).filter(|_| interim.send(hint())).count();
        assert_eq!(sent, MAX_HEADS);
        let (conn, hints) = InterimConn::stream();
        let interim = conn.current().unwrap();
        let final_head = InterimHead {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        };
        assert!(!interim.send(final_head), "a 200 is no interim head");
        assert_eq!((0..100).filter(|_| interim.send(hint())).count(), MAX_HEADS);
        drop(ClosingHints(hints));
    }
}
