//! Our own HTTP/2 server connection, on the `h2` crate, for services that answer any
//! request body ([`Handler`]): hyper's HTTP/2 server cannot send interim responses, and a
//! PoP must relay an origin's 103 Early Hints to the browsers that use them, which take
//! them over HTTP/2 and HTTP/3 only. Everything else follows hyper's server: the same
//! settings, bodies and trailers both ways, RFC 8441 extended CONNECT tunnels (see
//! `upgrade.rs`), keep-alive pings, and a graceful GOAWAY.

use crate::body::{Body, BoxError};
use crate::h2_io::H2Io;
use crate::handler::Handler;
use crate::interim::{InterimConn, InterimHead};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// A server's HTTP/2 limits, as hyper's server sets them by default.
#[derive(Debug, Clone)]
pub(crate) struct H2Settings {
    pub max_header_list_size: u32,
    pub keep_alive_interval: Option<Duration>,
    pub keep_alive_timeout: Duration,
    pub handshake_timeout: Duration,
    /// How long an answer may wait for the client's flow-control window before its
    /// stream is reset.
    pub write_stall: Duration,
}

const WINDOW: u32 = 1024 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;
const MAX_CONCURRENT_STREAMS: u32 = 200;
const MAX_LOCAL_ERROR_RESETS: usize = 1024;

/// The request body of one HTTP/2 stream: its DATA frames, then its trailers. Each frame's
/// bytes are given back to the flow-control window as they are taken, as hyper does.
pub struct H2Body {
    /// None for an extended CONNECT, whose stream the tunnel takes instead.
    recv: Option<RecvStream>,
    /// The Content-Length the request declared (h2 checks the DATA frames against it).
    length: Option<u64>,
    data_done: bool,
}

impl HttpBody for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        let Some(recv) = this.recv.as_mut() else {
            return Poll::Ready(None);
        };
        if !this.data_done {
            match std::task::ready!(recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match std::task::ready!(recv.poll_trailers(cx)) {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Serves one HTTP/2 connection until the client closes it, `close` is notified (then
/// GOAWAY, open streams finish), or a keep-alive ping goes unanswered.
pub(crate) async fn serve<IO, H>(
    io: IO,
    handler: H,
    settings: H2Settings,
    activity: Arc<crate::conn::Activity>,
    close: Arc<tokio::sync::Notify>,
) -> Result<(), BoxError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_header_list_size(settings.max_header_list_size)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .enable_connect_protocol();
    let mut conn =
        match crate::grace_timer::within(settings.handshake_timeout, builder.handshake(io)).await {
            Some(c) => c.map_err(|e| format!("HTTP/2 handshake: {e}"))?,
            None => return Ok(()),
        };
    // One pinger for the connection's life: a ping is never sent while one is out (h2
    // refuses that), whatever else the loop does meanwhile. Resolves when one goes
    // unanswered.
    let keep_alive = {
        let ping = conn.ping_pong();
        let (interval, timeout) = (settings.keep_alive_interval, settings.keep_alive_timeout);
        async move {
            let (Some(mut ping), Some(interval)) = (ping, interval) else {
                return std::future::pending().await;
            };
            loop {
                tokio::time::sleep(interval).await;
                match crate::grace_timer::within(timeout, ping.ping(h2::Ping::opaque())).await {
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    };
    tokio::pin!(keep_alive);
    let (mut closing, mut dead) = (false, false);
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((mut req, reply))) => {
                    let in_flight = activity.start();
                    // A tunnel keeps the connection busy (no idle GOAWAY) while it lives.
                    if crate::ws_handshake::extended_connect(req.version(), req.method(), req.extensions()) {
                        let hold = crate::conn::TunnelHold::for_stream(&activity);
                        req.extensions_mut().insert(hold);
                    }
                    // Boxed where it is made: the task then moves a pointer, not the
                    // stream's whole state (tokio copies a task's future as it runs).
                    let answer = Box::pin(stream(req, reply, handler.clone(), settings.write_stall));
                    tokio::spawn(async move {
                        answer.await;
                        drop(in_flight);
                    });
                }
                // h2 yields only connection errors here (I/O, GOAWAY): the connection ends.
                Some(Err(e)) => return Err(format!("HTTP/2 connection: {e}").into()),
                None => return Ok(()),
            },
            () = &mut keep_alive, if !dead => {
                tracing::debug!("an HTTP/2 peer did not answer a ping; closing");
                dead = true;
                conn.abrupt_shutdown(Reason::NO_ERROR);
            }
            _ = close.notified(), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
        }
    }
}

/// One request stream: the handler's answer (interim heads first), then its body.
async fn stream<H: Handler>(
    req: Request<RecvStream>,
    mut reply: SendResponse<Bytes>,
    handler: H,
    stall: Duration,
) {
    let (mut parts, recv) = req.into_parts();
    let head_only = parts.method == http::Method::HEAD;
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // An extended CONNECT (RFC 8441) may become a tunnel, which takes the stream's both
    // halves: the handler gets an empty body and a way to the tunnel.
    let (tunnel, recv) = if crate::upgrade::is_extended_connect(&parts) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        parts.extensions.insert(crate::upgrade::H2Upgrade::new(rx));
        (Some((tx, recv)), None)
    } else {
        (None, Some(recv))
    };
    let req = Request::from_parts(
        parts,
        H2Body {
            recv,
            length,
            data_done: false,
        },
    );
    let (interim, hints) = InterimConn::stream();
    // However this ends, no head is queued for the stream after it.
    let hints = crate::interim::ClosingHints(hints);
    let answer = handler.call(req, Some(interim));
    tokio::pin!(answer);
    // The client may reset the stream while the answer is made: then it is dropped.
    let res = loop {
        tokio::select! {
            // Hints first: one that arrived with the answer goes out before it.
            biased;
            heads = hints.0.next() => {
                for head in heads {
                    send_interim(&mut reply, head);
                }
            }
            res = &mut answer => break res,
            _ = poll_fn(|cx| reply.poll_reset(cx)) => return,
        }
    };
    hints.0.close();
    for head in hints.0.drain() {
        send_interim(&mut reply, head);
    }
    drop(hints);
    let (mut head, body) = res.into_parts();
    crate::received::settle(&mut head);
    strip_connection_fields(&mut head.headers);
    let is_tunnel = head.extensions.get::<crate::upgrade::Tunneled>().is_some();
    // A HEAD, 204 or 304 answer has no content (RFC 9110 §6.4.1), whatever its body holds.
    let bodiless = head_only
        || head.status == http::StatusCode::NO_CONTENT
        || head.status == http::StatusCode::NOT_MODIFIED;
    // As hyper's servers do: the Date, and the length when a body that has content knows
    // it (never on a tunnel's 2xx, whose stream goes on: RFC 9110 §9.3.6).
    head.headers
        .entry(http::header::DATE)
        .or_insert_with(crate::date::now);
    if !is_tunnel && !bodiless && !body.is_end_stream() {
        if let Some(n) = body.size_hint().exact() {
            head.headers
                .entry(http::header::CONTENT_LENGTH)
                .or_insert_with(|| http::HeaderValue::from(n));
        }
    }
    let end = !is_tunnel && (bodiless || body.is_end_stream());
    let send = match reply.send_response(Response::from_parts(head, ()), end) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "an HTTP/2 response could not be sent");
            return;
        }
    };
    if is_tunnel {
        // The tunnel's relay (`upgrade.rs`) takes the stream.
        if let Some((tx, recv)) = tunnel {
            let _ = tx.send(H2Io::new(send, recv));
        }
        return;
    }
    if !end {
        send_body(send, body, stall).await;
    }
}

/// Removes the fields HTTP/2 forbids as connection-specific (RFC 9113 §8.2.2), which `h2`
/// would refuse the whole response for. Proxied answers come without them already, so
/// this is a few lookups by constant name, not a parse.
fn strip_connection_fields(h: &mut http::HeaderMap) {
    const KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: http::HeaderName = http::HeaderName::from_static("proxy-connection");
    let forbidden = |n: &http::HeaderName| {
        n == http::header::CONNECTION
            || n == http::header::TRANSFER_ENCODING
            || n == http::header::UPGRADE
            || n == http::header::TE
            || n == KEEP_ALIVE
            || n == PROXY_CONNECTION
    };
    // One pass over the names (cheap comparisons) before any hashing removal.
    if !h.keys().any(forbidden) {
        return;
    }
    for n in crate::hop::connection_fields(h) {
        h.remove(n);
    }
    for n in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::UPGRADE,
        http::header::TE,
        KEEP_ALIVE,
        PROXY_CONNECTION,
    ] {
        h.remove(n);
    }
}

fn send_interim(reply: &mut SendResponse<Bytes>, head: InterimHead) {
    let mut res = Response::new(());
    *res.status_mut() = head.status;
    *res.headers_mut() = head.headers;
    strip_connection_fields(res.headers_mut());
    if let Err(e) = reply.send_informational(res) {
        tracing::debug!(error = %e, "an interim response could not be sent");
    }
}

/// Sends `body` on `send` as the client's flow-control window allows; resets the stream
/// when the body fails, so a cut answer never looks complete, or when the window stays
/// shut for `stall` (a client that stops reading must not hold the answer for ever).
async fn send_body(mut send: SendStream<Bytes>, body: Body, stall: Duration) {
    tokio::pin!(body);
    loop {
        let frame = tokio::select! {
            f = poll_fn(|cx| body.as_mut().poll_frame(cx)) => f,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return,
        };
        match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "an HTTP/2 response body failed");
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let last = body.is_end_stream();
                    if send_data(&mut send, data, last, stall).await.is_err() {
                        return;
                    }
                    if last {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let _ = send.send_trailers(trailers);
                    } else {
                        let _ = send.send_data(Bytes::new(), true);
                    }
                    return;
                }
            },
        }
    }
}

/// Sends `data` in pieces the window admits; `last` ends the stream with its last piece.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    last: bool,
    stall: Duration,
) -> Result<(), ()> {
    if data.is_empty() {
        return if last {
            send.send_data(data, true).map_err(|_| ())
        } else {
            Ok(())
        };
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        // The timer only when the window is shut: most pieces go out at once.
        let room = match poll_fn(|cx| Poll::Ready(send.poll_capacity(cx))).await {
            Poll::Ready(room) => room,
            Poll::Pending => {
                match crate::grace_timer::within(stall, poll_fn(|cx| send.poll_capacity(cx))).await
                {
                    Some(room) => room,
                    None => {
                        send.send_reset(Reason::CANCEL);
                        return Err(());
                    }
                }
            }
        };
        let room = match room {
            Some(Ok(n)) => n,
            // The stream was reset or the connection closed.
            _ => return Err(()),
        };
        if room == 0 {
            continue;
        }
        let piece = data.split_to(room.min(data.len()));
        send.send_data(piece, last && data.is_empty())
            .map_err(|_| ())?;
    }
    Ok(())
}
