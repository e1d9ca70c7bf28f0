//! Our own HTTP/1.1 client connection, driven by the task that sends on it: a request's
//! head (and a body known whole) goes out in one write, the answer's head is parsed with
//! `httparse`, and its body is read from the same buffer, so a small answer that came in
//! one read with its head costs no further read. hyper's client connection (its
//! dispatcher, a channel and a callback per request, its general parser) cost a balancer's
//! proxied request over a third of its instructions.
//!
//! Strict where a proxy must be (RFC 9112 §6.3): an answer with both `Transfer-Encoding`
//! and `Content-Length` is framed by its chunks and its connection is not reused; a
//! `Transfer-Encoding` whose last coding is not chunked is read to the connection's end;
//! lengths that differ or are not numbers are an error, never a guess.

use crate::body::{Body, BoxError};
use crate::h1_head::{has_token, header_map, push_chunk_size, tokens, Span, Spans};
use crate::interim::Interim;
use crate::received::{self, FramingField, Marks, Received};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The largest answer head taken (as hyper's client's default buffer).
const MAX_HEAD: usize = 400 * 1024;
/// Fields an answer head may have.
const MAX_FIELDS: usize = 100;
/// The longest field name the `http` crate takes.
const MAX_NAME: usize = u16::MAX as usize;
/// A chunk's size line (with extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 4096;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Nothing of the request went out: it may be sent elsewhere as it is.
    #[error("the connection was closed before the request was sent")]
    NotSent,
    #[error("the connection failed")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before its answer was whole.
    #[error("the connection closed before the answer was whole")]
    Closed,
    #[error("the answer could not be parsed: {0}")]
    Malformed(&'static str),
    #[error("the request body failed")]
    Body(#[source] BoxError),
}

/// A failed exchange, with the request when none of it went out (it may then be sent
/// on another connection as it is).
#[derive(Debug)]
pub struct SendError {
    pub error: H1Error,
    pub request: Option<Request<Body>>,
}

impl SendError {
    fn new(error: H1Error) -> Self {
        SendError {
            error,
            request: None,
        }
    }
}

/// A request's fields written once for all of its attempts. A balancer retrying a
/// request sends the same fields to whichever target each attempt picks: held in the
/// request's extensions, they go out after the request line, and the request's own map
/// holds only what the pool adds for one target (`Host`, when the client sent none). An
/// attempt then copies no header map, and none is written twice.
#[derive(Clone, Debug)]
pub struct WrittenFields {
    lines: Bytes,
    host: bool,
}

impl WrittenFields {
    /// `headers` as head lines, but for framing fields (the client pool writes its own)
    /// and names `skip` says no to; then what `more` writes (whole lines, each ending in
    /// CRLF).
    pub fn new(
        headers: &HeaderMap,
        skip: impl Fn(&HeaderName) -> bool,
        more: impl FnOnce(&mut Vec<u8>),
    ) -> Self {
        let mut out = Vec::with_capacity(512);
        for (name, value) in headers {
            if is_framing(name) || skip(name) {
                continue;
            }
            push_field(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
        more(&mut out);
        WrittenFields {
            lines: Bytes::from(out),
            host: headers.contains_key(http::header::HOST),
        }
    }

    /// Whether the lines hold the client's `Host`.
    pub fn has_host(&self) -> bool {
        self.host
    }
}

/// One head line: `name: value` and CRLF.
pub fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn is_framing(name: &HeaderName) -> bool {
    name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING
}

/// One HTTP/1.1 connection to an upstream.
pub struct H1Conn {
    io: TcpStream,
    /// Read and not yet taken: the rest of an answer, or what came after it.
    read: BytesMut,
    out: Vec<u8>,
    /// The request's body was not all written (the upstream answered first): the
    /// connection cannot carry another request.
    cut_short: bool,
    /// Answers carry their fields as [`Received`], not in their header map.
    received: bool,
}

impl H1Conn {
    pub fn new(io: TcpStream) -> Self {
        H1Conn {
            io,
            read: BytesMut::new(),
            out: Vec::new(),
            cut_short: false,
            received: false,
        }
    }

    /// Answers on this connection carry their fields as [`Received`] in their
    /// extensions, with an empty header map: for a proxy that passes them on.
    pub fn with_received_fields(mut self) -> Self {
        self.received = true;
        self
    }

    /// Whether an idle connection can no longer carry a request: the peer closed it, or
    /// sent something unasked. Looks without waiting (no system call when the socket has
    /// not become readable since the last read).
    pub fn is_closed(&mut self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        self.read.reserve(64);
        !matches!(self.io.try_read_buf(&mut self.read),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Sends `req` and reads its answer's head; the body reads the rest, and says when
    /// the connection may carry another request ([`H1Body::into_reusable`]). A request
    /// holding an [`Interim`] in its extensions gets the answer's 103 Early Hints relayed.
    ///
    /// Not an `async fn`, which would hold `req` twice in its state (as given and taken
    /// apart): the future is part of every proxied request's, allocated and copied whole.
    pub fn send(
        mut self: Box<Self>,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = Result<Response<H1Body>, SendError>> {
        let head_only = req.method() == Method::HEAD;
        let interim = req.extensions().get::<Interim>().cloned();
        let written = req
            .extensions()
            .get::<WrittenFields>()
            .map(|w| w.lines.clone());
        let (parts, body) = req.into_parts();
        self.out.clear();
        async move {
            if body.is_end_stream() || body.size_hint().exact().is_some() {
                // Known whole: the head and the body go out in one write.
                let data = match body.collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return Err(SendError::new(H1Error::Body(e))),
                };
                encode(
                    &mut self.out,
                    &parts,
                    written.as_deref(),
                    Some(data.len() as u64),
                );
                match self.write_all(&data).await {
                    Ok(()) => {}
                    Err((H1Error::NotSent, _)) => {
                        let request = Request::from_parts(parts, crate::body::full(data));
                        return Err(SendError {
                            error: H1Error::NotSent,
                            request: Some(request),
                        });
                    }
                    Err((e, _)) => return Err(SendError::new(e)),
                }
            } else {
                encode(&mut self.out, &parts, written.as_deref(), None);
                self.write_streamed(body)
                    .await
                    .map_err(|(e, _)| SendError::new(e))?;
            }
            self.read_head(head_only, interim.as_ref())
                .await
                .map_err(SendError::new)
        }
    }

    /// Writes what is gathered in `out` (a head, a chunk's framing) and `data`, then
    /// empties `out`; the bool says whether any byte went out.
    /// While the upstream takes no more (its buffers full) and has begun to answer, the
    /// rest is not written: that answer (a 413, a 401) is read as the answer, as hyper's
    /// client does, instead of waiting out the timeout on a write that will never finish.
    /// The connection is then not reused.
    async fn write_all(&mut self, data: &[u8]) -> Result<(), (H1Error, bool)> {
        let (mut head, mut at) = (0, 0);
        while head < self.out.len() || at < data.len() {
            let bufs = [IoSlice::new(&self.out[head..]), IoSlice::new(&data[at..])];
            let n = match self.io.try_write_vectored(&bufs) {
                Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let answering = tokio::select! {
                        ready = self.io.writable() => ready.map(|()| false),
                        ready = self.io.readable(), if head + at > 0 => ready.map(|()| true),
                    };
                    match answering {
                        Ok(false) => continue,
                        Ok(true) => {
                            self.cut_short = true;
                            return Ok(());
                        }
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            let n = n.map_err(|e| (not_sent_or(e, head + at == 0), head + at > 0))?;
            let from_head = n.min(self.out.len() - head);
            head += from_head;
            at += n - from_head;
        }
        self.out.clear();
        Ok(())
    }

    /// Writes the head, then the body's frames as chunks as they come: each chunk's CRLF
    /// goes out with the next size line (the last with the final `0`).
    async fn write_streamed(&mut self, mut body: Body) -> Result<(), (H1Error, bool)> {
        self.write_all(&[]).await?;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| (H1Error::Body(e), true))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            push_chunk_size(&mut self.out, data.len());
            self.write_all(&data).await.map_err(|(e, _)| (e, true))?;
            if self.cut_short {
                return Ok(());
            }
            self.out.extend_from_slice(b"\r\n");
        }
        self.out.extend_from_slice(b"0\r\n\r\n");
        self.write_all(&[]).await.map_err(|(e, _)| (e, true))
    }

    /// Reads until the answer's final head; interim heads go to `interim` (103) or are
    /// passed over (100).
    async fn read_head(
        mut self: Box<Self>,
        head_only: bool,
        interim: Option<&Interim>,
    ) -> Result<Response<H1Body>, H1Error> {
        loop {
            if !self.read.is_empty() {
                match parse_head(&mut self.read, head_only, self.received)? {
                    Parsed::Partial if self.read.len() > MAX_HEAD => {
                        return Err(H1Error::Malformed("the answer head is too large"))
                    }
                    Parsed::Partial => {}
                    Parsed::Interim(status, headers) => {
                        if let Some(to) = interim {
                            to.relay(status, &headers);
                        }
                        continue;
                    }
                    Parsed::Final(head, reading, keep_alive) => {
                        let keep_alive = keep_alive && !self.cut_short;
                        let body = H1Body {
                            conn: Some(self),
                            reading,
                            keep_alive,
                        };
                        return Ok(Response::from_parts(head, body));
                    }
                }
            }
            self.read.reserve(8192);
            if self.io.read_buf(&mut self.read).await? == 0 {
                return Err(H1Error::Closed);
            }
        }
    }

    /// Reads more into the buffer: at least 8 KiB of room, up to 64 KiB for a long body.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: u64) -> Poll<std::io::Result<usize>> {
        let room = want.clamp(8192, 65536) as usize;
        self.read.reserve(room);
        loop {
            match self.io.try_read_buf(&mut self.read) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    ready!(self.io.poll_read_ready(cx))?;
                }
                done => return Poll::Ready(done),
            }
        }
    }
}

/// A write error: [`H1Error::NotSent`] when nothing had gone out and the peer had closed.
fn not_sent_or(e: std::io::Error, nothing_sent: bool) -> H1Error {
    let closed = matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
    );
    if nothing_sent && closed {
        H1Error::NotSent
    } else {
        H1Error::Io(e)
    }
}

/// Writes the request head: the origin-form target, the fields (those `written` once for
/// all attempts first, [`WrittenFields`]), and the framing of the body (`length` when it
/// is known, else chunked), as hyper's client does: no length for an empty body except on
/// the methods that expect one.
fn encode(
    out: &mut Vec<u8>,
    parts: &http::request::Parts,
    written: Option<&[u8]>,
    length: Option<u64>,
) {
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(written.unwrap_or_default());
    for (name, value) in &parts.headers {
        if !is_framing(name) {
            push_field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let expects_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    match length {
        Some(0) if !expects_body => {}
        Some(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

enum Parsed {
    Partial,
    Interim(StatusCode, HeaderMap),
    Final(http::response::Parts, Reading, bool),
}

/// Parses the answer head at the front of `read` and takes it out when whole.
/// `received`: a final answer's fields go in a [`Received`], not in its header map.
fn parse_head(read: &mut BytesMut, head_only: bool, received: bool) -> Result<Parsed, H1Error> {
    // Left uninitialised: httparse writes the fields it finds (zeroing 3 KiB per answer
    // showed in the profile).
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut spans = [Span::default(); MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut res,
        read,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => return Err(H1Error::Malformed("not an HTTP/1.1 answer head")),
    };
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(H1Error::Malformed("no status"))?;
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let at = Spans::new(read);
    let (mut close, mut keep_alive, mut chunked, mut length) = (false, false, None, None);
    let count = res.headers.len();
    let mut marks = Marks::default();
    for (i, (field, span)) in res.headers.iter().zip(spans.iter_mut()).enumerate() {
        let name = field.name.as_bytes();
        let kind = FramingField::of(name);
        if i < received::MAX {
            marks.mark(i, kind);
        }
        if kind == Some(FramingField::TransferEncoding) {
            // The fields make one list; its last coding decides (empty items count for
            // nothing, RFC 9110 §5.6.1), and a list with none frames nothing as chunked.
            let last = tokens(field.value).filter(|t| !t.is_empty()).last();
            chunked = match last {
                Some(t) => Some(t.eq_ignore_ascii_case(b"chunked")),
                None => chunked.or(Some(false)),
            };
        } else if kind == Some(FramingField::ContentLength) {
            for t in tokens(field.value) {
                let n = parse_length(t).ok_or(H1Error::Malformed("a bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(H1Error::Malformed("Content-Length values differ"));
                }
                length = Some(n);
            }
        } else if kind == Some(FramingField::Connection) {
            close |= has_token(field.value, b"close");
            keep_alive |= has_token(field.value, b"keep-alive");
        } else if name.len() > MAX_NAME {
            return Err(H1Error::Malformed("a field name over 64 KiB"));
        }
        *span = at.field(field);
    }
    let head = read.split_to(len).freeze();
    let mut extensions = http::Extensions::new();
    let headers = if received && count <= received::MAX && !status.is_informational() {
        extensions.insert(Received::new(head, &spans[..count], marks));
        HeaderMap::new()
    } else {
        // Room for what the balancer adds to an answer (its request id, a stickiness
        // cookie).
        header_map(&head, &spans[..count], 2)
            .ok_or(H1Error::Malformed("a field the http crate refuses"))?
    };
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(H1Error::Malformed("an upgrade nobody asked for"));
        }
        return Ok(Parsed::Interim(status, headers));
    }
    let mut keep_alive = !close && (version == Version::HTTP_11 || keep_alive);
    let bodiless =
        head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let reading = match (bodiless, chunked, length) {
        (true, _, _) => Reading::Length(0),
        (false, Some(true), length) => {
            // Both framings: the chunks decide, and the connection is not trusted again.
            keep_alive &= length.is_none();
            Reading::Chunked(Chunk::Size)
        }
        (false, Some(false), _) | (false, None, None) => {
            keep_alive = false;
            Reading::ToClose
        }
        (false, None, Some(n)) => Reading::Length(n),
    };
    let mut res = Response::new(());
    *res.status_mut() = status;
    *res.version_mut() = version;
    *res.headers_mut() = headers;
    *res.extensions_mut() = extensions;
    Ok(Parsed::Final(res.into_parts().0, reading, keep_alive))
}

/// A length: digits only (RFC 9110 §8.6).
fn parse_length(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// How much of an answer's body is left to read.
enum Reading {
    Length(u64),
    Chunked(Chunk),
    /// To the connection's end.
    ToClose,
    Done,
}

enum Chunk {
    /// A size line next.
    Size,
    /// This much of a chunk's data left, then its CRLF.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section (possibly empty) after the last chunk.
    Trailers,
}

/// An answer's body, read from its connection as it is polled.
pub struct H1Body {
    /// None once the body failed (the connection is gone with it).
    conn: Option<Box<H1Conn>>,
    reading: Reading,
    keep_alive: bool,
}

impl std::fmt::Debug for H1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H1Body")
    }
}

impl H1Body {
    /// The connection, when the body was read whole and the connection may carry
    /// another request.
    pub fn into_reusable(&mut self) -> Option<Box<H1Conn>> {
        match self.reading {
            Reading::Done | Reading::Length(0) if self.keep_alive => self.conn.take(),
            _ => None,
        }
    }

    fn fail(&mut self, e: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.conn = None;
        self.reading = Reading::Done;
        Poll::Ready(Some(Err(e)))
    }
}

impl HttpBody for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let want = match &mut this.reading {
                Reading::Done | Reading::Length(0) => {
                    this.reading = Reading::Done;
                    return Poll::Ready(None);
                }
                Reading::Length(left) | Reading::Chunked(Chunk::Data(left)) => {
                    if !conn.read.is_empty() {
                        let n = (*left).min(conn.read.len() as u64);
                        *left -= n;
                        let data = conn.read.split_to(n as usize).freeze();
                        if let Reading::Chunked(chunk @ Chunk::Data(0)) = &mut this.reading {
                            *chunk = Chunk::DataEnd;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    *left
                }
                Reading::ToClose => {
                    if !conn.read.is_empty() {
                        let data = conn.read.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    65536
                }
                Reading::Chunked(chunk) => match step(chunk, &mut conn.read) {
                    Err(e) => return this.fail(e),
                    Ok(Step::Again) => continue,
                    Ok(Step::More) => 0,
                    Ok(Step::Trailers(t)) => {
                        this.reading = Reading::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Step::End) => {
                        this.reading = Reading::Done;
                        return Poll::Ready(None);
                    }
                },
            };
            match ready!(conn.poll_fill(cx, want)) {
                Ok(0) if matches!(this.reading, Reading::ToClose) => {
                    this.reading = Reading::Done;
                    this.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(H1Error::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(H1Error::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done | Reading::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Done => SizeHint::with_exact(0),
            Reading::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

enum Step {
    /// The state moved on: look again.
    Again,
    /// More bytes are needed.
    More,
    Trailers(HeaderMap),
    End,
}

/// One step of the chunked decoder over what has been read.
fn step(chunk: &mut Chunk, read: &mut BytesMut) -> Result<Step, H1Error> {
    match chunk {
        Chunk::Size => {
            let Some(end) = read.windows(2).position(|w| w == b"\r\n") else {
                if read.len() > MAX_CHUNK_LINE {
                    return Err(H1Error::Malformed("a chunk size line is too long"));
                }
                return Ok(Step::More);
            };
            let line = &read[..end];
            let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            let rest = &line[digits..];
            // Extensions (`;name=value`, after optional spaces or tabs) are ignored; nothing
            // else may follow the size, and no control byte may sit in them (a bare LF
            // there would end the line for another parser).
            let ext = rest.trim_ascii_start();
            let rest_ok = rest[..rest.len() - ext.len()]
                .iter()
                .all(|b| *b == b' ' || *b == b'\t')
                && ext.first().is_none_or(|b| *b == b';')
                && ext
                    .iter()
                    .all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f));
            if digits == 0 || digits > 15 || !rest_ok {
                return Err(H1Error::Malformed("a bad chunk size"));
            }
            let size = line[..digits].iter().fold(0u64, |n, b| {
                (n << 4) | u64::from((*b as char).to_digit(16).unwrap_or(0))
            });
            read.advance(end + 2);
            *chunk = if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            };
            Ok(Step::Again)
        }
        Chunk::DataEnd => {
            if read.len() < 2 {
                return Ok(Step::More);
            }
            if &read[..2] != b"\r\n" {
                return Err(H1Error::Malformed(
                    "a chunk does not end where its size says",
                ));
            }
            read.advance(2);
            *chunk = Chunk::Size;
            Ok(Step::Again)
        }
        Chunk::Trailers => {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            match httparse::parse_headers(read, &mut fields) {
                Ok(httparse::Status::Complete((n, fields))) => {
                    let mut trailers = HeaderMap::new();
                    for f in fields.iter() {
                        let name = http::HeaderName::from_bytes(f.name.as_bytes());
                        let value = http::HeaderValue::from_bytes(f.value);
                        if let (Ok(name), Ok(value)) = (name, value) {
                            trailers.append(name, value);
                        }
                    }
                    read.advance(n);
                    Ok(match trailers.is_empty() {
                        true => Step::End,
                        false => Step::Trailers(trailers),
                    })
                }
                Ok(httparse::Status::Partial) if read.len() > MAX_HEAD => {
                    Err(H1Error::Malformed("the trailers are too large"))
                }
                Ok(httparse::Status::Partial) => Ok(Step::More),
                Err(_) => Err(H1Error::Malformed("bad trailers")),
            }
        }
        // Data is read by the body itself.
        Chunk::Data(_) => Ok(Step::Again),
    }
}
