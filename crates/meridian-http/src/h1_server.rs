//! Our own HTTP/1.1 server connection, for the requests nearly every client sends: a head
//! without a body. hyper's server cost a cache hit about as many instructions as the cache
//! itself (its dispatcher, its buffers, its general header encoder); this loop parses with
//! `httparse`, calls the handler and writes the answer in as few writes as it can.
//!
//! Any other request (one with a body, `Expect`, an upgrade, CONNECT, a target not in
//! origin form) and any head it cannot parse or finds too large hands the connection, with
//! every byte read and not yet answered, to hyper's server for the rest of its life. Those
//! keep hyper's behaviour and its error answers (400, 431) exactly, and the framing of
//! request bodies, where request smuggling lives, stays hyper's alone.

use crate::body::{Body, BoxError};
use crate::conn::{Activity, Tracked};
use crate::grace_timer::GraceSleep;
use crate::h1_head::{has_token, header_map, push_chunk_size, slice, Span, Spans};
use crate::handler::{Handler, HyperHandler};
use crate::interim::{InterimIo, Shared};
use crate::received::{FramingField, Received};
use crate::rewind::Rewind;
use crate::write_stall::WriteStall;
use bytes::BytesMut;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Body as HttpBody;
use hyper_util::rt::TokioIo;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Heads with more fields than this go to hyper (which takes up to 100).
const MAX_FIELDS: usize = 64;
/// Body bytes gathered into one write with the head (or with each other); larger pieces
/// are written as they are, without a copy.
const GATHER: usize = 16 * 1024;

/// What serving HTTP/1.1 connections needs.
pub(crate) struct H1Settings {
    /// hyper's server, for the rest of a connection once a request needs it.
    pub(crate) hyper: hyper::server::conn::http1::Builder,
    /// A whole head must arrive within this, on a new connection and between requests
    /// alike (as hyper's header read timeout, which is also its keep-alive limit).
    pub(crate) head_timeout: Duration,
    /// The largest head; a larger one goes to hyper, which answers 431.
    pub(crate) head_limit: usize,
    /// How long a write may take nothing before the connection ends.
    pub(crate) write_stall: Duration,
}

/// Asks a connection to finish the request in flight and close.
#[derive(Default)]
pub(crate) struct Closing {
    set: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Closing {
    pub(crate) fn close(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }
}

/// Serves one HTTP/1 connection until the client or the server ends it.
pub(crate) async fn serve<IO, H>(
    io: IO,
    handler: H,
    settings: Arc<H1Settings>,
    activity: Arc<Activity>,
    hints: Arc<Shared>,
    closing: Arc<Closing>,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut io = InterimIo::new(io, hints.clone());
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    // A head that does not come in time closes the connection, as hyper does, after a
    // moment more for what a frozen process has not read yet (`GraceSleep`).
    let deadline = GraceSleep::after(settings.head_timeout);
    tokio::pin!(deadline);
    // One wait for the close for the connection's life: a new one per request registers
    // with the `Notify` and leaves it again under its lock (it showed in the profile).
    let stop = closing.notify.notified();
    tokio::pin!(stop);
    loop {
        deadline.as_mut().reset_after(settings.head_timeout);
        let head = loop {
            if !buf.is_empty() {
                match take_head(&mut buf, settings.head_limit) {
                    Taken::Head(head) => break head,
                    Taken::Partial if buf.len() < settings.head_limit => {}
                    Taken::Partial | Taken::Hyper => {
                        let rest = Rest {
                            io,
                            read: buf,
                            activity,
                            hints,
                        };
                        // Boxed: hyper's connection is most of this future's size, and
                        // only connections that come to it should carry it.
                        return Box::pin(rest.serve(handler, &settings, &closing, stop)).await;
                    }
                }
            } else if closing.is_set() {
                return Ok(());
            }
            tokio::select! {
                biased;
                read = read_more(&mut io, &mut buf) => if read? == 0 {
                    return Ok(());
                },
                _ = deadline.as_mut() => return Ok(()),
                // Between requests a stopping server closes at once.
                _ = stop.as_mut(), if buf.is_empty() => {}
            }
        };
        let asked = Asked {
            v10: head.req.version() == Version::HTTP_10,
            head_only: head.req.method() == Method::HEAD,
            keep_alive: head.keep_alive,
        };
        let in_flight = activity.start();
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
        let open = (!asked.v10).then(|| OpenRequest::begin(&hints));
        let Some(res) = answer(&mut io, &mut buf, handler.call(head.req, None)).await else {
            // The client went away: its request is dropped (an upstream exchange with it).
            return Ok(());
        };
        drop(open);
        let (mut parts, mut body) = res.into_parts();
        let mut keep_alive = asked.keep_alive && !closing.is_set();
        if parts.status.is_informational() {
            // A 1xx is no final answer: as hyper does, a 500, and the connection closes.
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            parts.headers.clear();
            parts.extensions.remove::<Received>();
            body = crate::body::empty();
            keep_alive = false;
        }
        let (framing, keep_alive) = encode(
            &mut out,
            &parts,
            &body,
            Asked {
                keep_alive,
                ..asked
            },
        );
        let whole = send_body(&mut io, &mut out, body, framing, settings.write_stall).await?;
        io.flush().await?;
        drop(in_flight);
        if !keep_alive || !whole {
            let _ = io.shutdown().await;
            return Ok(());
        }
    }
}

/// Reads what the client sends next into `buf`. A new head (`buf` empty) is read through a
/// buffer on the stack and copied out at its size, so that between requests a connection
/// holds no read buffer: its 4 KiB were most of what an idle keep-alive connection cost
/// beyond HAProxy's (bench/ws.sh: 9.3 KiB, now 5.5). It costs an allocation and a copy of
/// the head per request, 1% of a proxied request's instructions. The rest of a head, and pipelined bytes, read into
/// `buf` itself. (Letting the answer's write buffer go too saved 0.7 KiB for as much
/// again.)
async fn read_more<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    if !buf.is_empty() {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        return io.read_buf(buf).await;
    }
    // What an answered head shared with `buf` goes with the request; an empty `buf`
    // keeps no allocation while the connection waits.
    *buf = BytesMut::new();
    poll_fn(|cx| {
        // Lives only in this poll, never in the connection's future.
        let mut on_stack = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        let mut read = tokio::io::ReadBuf::uninit(&mut on_stack);
        std::task::ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

/// What the request asked of its answer's framing.
#[derive(Clone, Copy)]
struct Asked {
    v10: bool,
    head_only: bool,
    keep_alive: bool,
}

/// The request in flight takes interim heads until its answer is ready (or it is dropped).
struct OpenRequest(Arc<Shared>, u64);

impl OpenRequest {
    fn begin(hints: &Arc<Shared>) -> Self {
        OpenRequest(hints.clone(), hints.begin())
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

/// The handler's answer; interim heads queued meanwhile are written as they come. None
/// when the client closed its connection (or it failed) before the answer was ready: as
/// hyper does, the request is then dropped, so a client that sends a request and hangs
/// up at once holds no upstream exchange nor connection slot. Bytes that arrive meanwhile
/// (the next pipelined request) are kept in `buf`; reading stops at the first of them.
async fn answer<IO: AsyncRead + AsyncWrite + Unpin>(
    io: &mut InterimIo<IO>,
    buf: &mut BytesMut,
    mut answer: Pin<Box<dyn Future<Output = Response<Body>> + Send>>,
) -> Option<Response<Body>> {
    let mut watch = buf.is_empty();
    poll_fn(|cx| {
        if let Poll::Ready(res) = answer.as_mut().poll(cx) {
            return Poll::Ready(Some(res));
        }
        if watch {
            let mut probe = [0u8; 1024];
            let mut read = tokio::io::ReadBuf::new(&mut probe);
            match Pin::new(&mut *io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(None),
                Poll::Ready(Ok(())) => {
                    buf.extend_from_slice(read.filled());
                    watch = false;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Pending => {}
            }
        }
        // Flushing writes the queued heads, and has a new one wake this task.
        match Pin::new(&mut *io).poll_flush(cx) {
            Poll::Ready(Err(_)) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    })
    .await
}

/// The rest of a connection, for hyper's server.
struct Rest<IO> {
    io: InterimIo<IO>,
    /// Read and not answered: hyper parses it again.
    read: BytesMut,
    activity: Arc<Activity>,
    hints: Arc<Shared>,
}

impl<IO> Rest<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// `stop` is the connection's one wait for its close, handed on: it is registered
    /// with the `Notify`, which wakes one waiter, so a second wait made here would never
    /// hear the close.
    async fn serve<H: Handler>(
        self,
        handler: H,
        settings: &H1Settings,
        closing: &Closing,
        mut stop: Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Result<(), BoxError> {
        let service = Tracked::new(HyperHandler(handler), self.activity, self.hints);
        let io = WriteStall::new(self.io, settings.write_stall);
        let io = TokioIo::new(Rewind::new(io, self.read.freeze()));
        let conn = settings.hyper.serve_connection(io, service).with_upgrades();
        tokio::pin!(conn);
        loop {
            if closing.is_set() {
                conn.as_mut().graceful_shutdown();
                return conn.await.map_err(Into::into);
            }
            tokio::select! {
                served = conn.as_mut() => return served.map_err(Into::into),
                _ = stop.as_mut() => {}
            }
        }
    }
}

/// A request head this loop serves.
struct Head {
    req: Request<Empty<bytes::Bytes>>,
    keep_alive: bool,
}

/// Not boxed although `Head` is large: it is returned once per request and unpacked at
/// once, and a box would be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Taken {
    Head(Head),
    /// More bytes are needed.
    Partial,
    /// Not a request this loop serves, or not one it can parse: hyper's.
    Hyper,
}

/// Parses the head at the front of `buf` and takes it out when it is one this loop
/// serves; otherwise `buf` is left as it was.
fn take_head(buf: &mut BytesMut, limit: usize) -> Taken {
    // Left uninitialised: httparse writes the fields it finds.
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut spans = [Span::default(); MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut fields) {
        // A whole head over the limit (one read can bring more than the limit) is
        // hyper's to refuse with 431.
        Ok(httparse::Status::Complete(n)) if n <= limit => n,
        Ok(httparse::Status::Partial) => return Taken::Partial,
        Ok(httparse::Status::Complete(_)) | Err(_) => return Taken::Hyper,
    };
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Taken::Hyper;
    };
    let method = match Method::from_bytes(method.as_bytes()) {
        Ok(m) if m != Method::CONNECT => m,
        _ => return Taken::Hyper,
    };
    if !path.starts_with('/') {
        return Taken::Hyper;
    }
    let at = Spans::new(buf);
    let path = at.at(path.as_bytes());
    let (mut close, mut keep_alive, mut length) = (false, false, false);
    let count = req.headers.len();
    for (field, span) in req.headers.iter().zip(spans.iter_mut()) {
        let name = field.name.as_bytes();
        let value = field.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            // Only an empty body is served here; a second length is hyper's to refuse.
            if value != b"0" || length {
                return Taken::Hyper;
            }
            length = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
        {
            return Taken::Hyper;
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(value, b"close");
            keep_alive |= has_token(value, b"keep-alive");
        }
        *span = at.field(field);
    }
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let keep_alive = !close && (version == Version::HTTP_11 || keep_alive);
    let head = buf.split_to(len).freeze();
    // Room for the fields a proxy adds to a request (the balancer's `X-Forwarded-*`, trace
    // and request ids).
    let headers = header_map(&head, &spans[..count], 6);
    let uri = http::Uri::from_maybe_shared(slice(&head, path));
    let (Some(headers), Ok(uri)) = (headers, uri) else {
        // Rare: put the head back for hyper to answer.
        let mut back = BytesMut::with_capacity(head.len() + buf.len());
        back.extend_from_slice(&head);
        back.extend_from_slice(buf);
        *buf = back;
        return Taken::Hyper;
    };
    let mut req = Request::new(Empty::new());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Taken::Head(Head { req, keep_alive })
}

/// How an answer's body goes on the wire.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    None,
    Length(u64),
    Chunked,
    /// To the connection's end (an HTTP/1.0 client and a body of unknown length).
    Close,
}

/// Writes the answer's head into `out`, as hyper's server would: its status line, its
/// fields with the framing ones decided here, then `Date` when it has none. Returns the
/// body's framing and whether the connection stays open after it.
fn encode(
    out: &mut Vec<u8>,
    res: &http::response::Parts,
    body: &Body,
    asked: Asked,
) -> (Framing, bool) {
    let status = res.status;
    let mut keep_alive = asked.keep_alive;
    if status == StatusCode::OK && !asked.v10 {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(if asked.v10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        let reason = status.canonical_reason().unwrap_or("<none>");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // RFC 9110 §8.6: no length field on a 1xx or 204; none of these has content.
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    let bodiless = asked.head_only || no_length || status == StatusCode::NOT_MODIFIED;
    let empty = body.is_end_stream();
    let mut seen = Seen {
        // An empty body's stated length is dropped (a 304's too), except on a HEAD
        // answer, where it is the length a GET would get: as hyper does.
        drop_length: no_length || (empty && !asked.head_only),
        ..Seen::default()
    };
    if let Some(received) = res.extensions.get::<Received>() {
        for (name, value, read) in received.for_server() {
            if !read || seen.passes(FramingField::of(name), value) {
                write_field(out, name, value);
            }
        }
    }
    for (name, value) in &res.headers {
        let kind = FramingField::of_name(name);
        if kind.is_none() || seen.passes(kind, value.as_bytes()) {
            write_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let Seen {
        length,
        date,
        said_close,
        said_keep_alive,
        ..
    } = seen;
    keep_alive &= !said_close;
    let exact = body.size_hint().exact();
    let framing = if bodiless {
        // A HEAD answer says the length a GET would get, when it is known.
        if asked.head_only && !no_length && status != StatusCode::NOT_MODIFIED && length.is_none() {
            if let Some(n) = exact.filter(|n| *n > 0) {
                write_length(out, n);
            }
        }
        Framing::None
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if let Some(n) = exact {
        write_length(out, n);
        Framing::Length(n)
    } else if asked.v10 {
        keep_alive = false;
        Framing::Close
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        Framing::Chunked
    };
    if asked.v10 {
        if keep_alive && !said_keep_alive {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    } else if !keep_alive && !said_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(crate::date::now().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

/// What [`encode`] reads from an answer's fields.
#[derive(Default)]
struct Seen {
    drop_length: bool,
    length: Option<u64>,
    date: bool,
    said_close: bool,
    said_keep_alive: bool,
}

impl Seen {
    /// Reads a field of `kind`; whether it is written as it is.
    fn passes(&mut self, kind: Option<FramingField>, value: &[u8]) -> bool {
        match kind {
            Some(FramingField::ContentLength) => {
                if self.drop_length || self.length.is_some() {
                    return false;
                }
                self.length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
                self.length.is_some()
            }
            // The framing is decided here.
            Some(FramingField::TransferEncoding) => false,
            Some(FramingField::Connection) => {
                self.said_close |= has_token(value, b"close");
                self.said_keep_alive |= has_token(value, b"keep-alive");
                true
            }
            Some(FramingField::Date) => {
                self.date = true;
                true
            }
            None => true,
        }
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn write_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the head gathered in `out` and the body after it. Returns false when the body
/// did not match its length (the connection must close: the client cannot tell where the
/// next answer starts).
async fn send_body<IO: AsyncWrite + Unpin>(
    io: &mut InterimIo<IO>,
    out: &mut Vec<u8>,
    mut body: Body,
    framing: Framing,
    stall: Duration,
) -> Result<bool, BoxError> {
    if framing == Framing::None {
        write_gathered(io, out, &[], stall).await?;
        return Ok(true);
    }
    let mut sent = 0u64;
    let mut whole = true;
    loop {
        // What the body has ready is gathered; before waiting, what is gathered goes out.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                write_gathered(io, out, &[], stall).await?;
                body.frame().await
            }
        };
        let mut data = match frame {
            None => break,
            Some(Err(e)) => return Err(e),
            // Trailers have no place in HTTP/1.1 answers here (gRPC is HTTP/2).
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if let Framing::Length(n) = framing {
            let room = n.saturating_sub(sent);
            if data.len() as u64 > room {
                data.truncate(room as usize);
                whole = false;
            }
        }
        sent += data.len() as u64;
        if framing == Framing::Chunked {
            push_chunk_size(out, data.len());
        }
        if out.len() + data.len() <= GATHER {
            out.extend_from_slice(&data);
        } else {
            write_gathered(io, out, &data, stall).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= GATHER {
            write_gathered(io, out, &[], stall).await?;
        }
        if !whole {
            break;
        }
    }
    if framing == Framing::Chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    write_gathered(io, out, &[], stall).await?;
    Ok(whole && !matches!(framing, Framing::Length(n) if n != sent))
}

/// Writes `out`, then `data`, in one vectored write where the transport takes them;
/// `out` is empty afterwards. A write that takes nothing for `stall` ends the connection
/// (as ALB's idle timeout counts no data sent or received): a client that stops reading
/// would otherwise hold its connection, and its socket's send buffer, for ever.
async fn write_gathered<IO: AsyncWrite + Unpin>(
    io: &mut InterimIo<IO>,
    out: &mut Vec<u8>,
    data: &[u8],
    stall: Duration,
) -> std::io::Result<()> {
    let (mut head, mut at) = (0, 0);
    while head < out.len() || at < data.len() {
        let n = if head < out.len() && at < data.len() && io.is_write_vectored() {
            let bufs = [IoSlice::new(&out[head..]), IoSlice::new(&data[at..])];
            unstalled(
                poll_fn(|cx| Pin::new(&mut *io).poll_write_vectored(cx, &bufs)),
                stall,
            )
            .await?
        } else if head < out.len() {
            unstalled(io.write(&out[head..]), stall).await?
        } else {
            unstalled(io.write(&data[at..]), stall).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(out.len() - head);
        head += from_head;
        at += n - from_head;
    }
    out.clear();
    Ok(())
}

/// Awaits one write, for at most `stall` once it has to wait. The timer is armed only
/// then: a write the socket takes at once (nearly every one) costs no clock read.
async fn unstalled<F: Future<Output = std::io::Result<usize>>>(
    write: F,
    stall: Duration,
) -> std::io::Result<usize> {
    let mut write = std::pin::pin!(write);
    if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return done;
    }
    crate::grace_timer::within(stall, write)
        .await
        .unwrap_or_else(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing written to it within the idle timeout",
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(raw: &[u8]) -> (Taken, BytesMut) {
        let mut buf = BytesMut::from(raw);
        (take_head(&mut buf, 64 * 1024), buf)
    }

    #[tokio::test]
    async fn a_new_head_is_read_into_a_buffer_of_its_own_size() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n";
        client.write_all(head).await.unwrap();
        // The last request's buffer, 4 KiB: not what the connection waits with.
        let mut buf = BytesMut::with_capacity(4096);
        assert_eq!(read_more(&mut server, &mut buf).await.unwrap(), head.len());
        assert_eq!(&buf[..], head);
        assert_eq!(buf.capacity(), head.len(), "the buffer is the head's size");
        // The rest of a head reads into the buffer itself, grown for it.
        client.write_all(b"\r\n").await.unwrap();
        assert_eq!(read_more(&mut server, &mut buf).await.unwrap(), 2);
        assert!(buf.ends_with(b"Host: a\r\n\r\n"));
        assert!(buf.capacity() >= 1024);
        drop(client);
        buf.clear();
        assert_eq!(read_more(&mut server, &mut buf).await.unwrap(), 0, "closed");
    }

    #[test]
    fn a_bodyless_request_is_taken_and_what_follows_stays() {
        let (t, rest) = taken(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nGET /next");
        let Taken::Head(head) = t else {
            panic!("not taken")
        };
        assert_eq!(head.req.uri(), "/a?b=1");
        assert_eq!(head.req.headers()["host"], "x");
        assert_eq!(head.req.headers()["x-a"], "1");
        assert!(head.keep_alive);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn http_1_0_keeps_alive_only_when_asked() {
        let (Taken::Head(plain), _) = taken(b"GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!plain.keep_alive);
        let (Taken::Head(asked), _) = taken(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        else {
            panic!()
        };
        assert!(asked.keep_alive);
        let (Taken::Head(close), _) = taken(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n") else {
            panic!()
        };
        assert!(!close.keep_alive);
    }

    #[test]
    fn anything_else_is_left_whole_for_hyper() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
        ] {
            let (t, rest) = taken(raw);
            assert!(
                matches!(t, Taken::Hyper),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(&rest[..], raw, "the bytes stay for hyper");
        }
        let (t, _) = taken(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(t, Taken::Partial));
        // A whole head over the limit, however it came, is hyper's to refuse (431).
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "y".repeat(70_000));
        let (t, rest) = taken(big.as_bytes());
        assert!(matches!(t, Taken::Hyper));
        assert_eq!(rest.len(), big.len());
    }
}
