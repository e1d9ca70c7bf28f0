//! A viewer's request body, read in two steps: as far as protection inspects it, then
//! (only for a request protection let through) the rest, buffered for the origin request
//! within [`MAX_REQUEST_BODY`]. A request that the geo restriction, the web ACL, a rate
//! limit or authentication refuses costs the PoP at most the inspection limit of memory,
//! not 10 MiB; as AWS WAF, which sees the first 8–64 KB of a body.

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as HttpBody;
use meridian_http::{Body, BoxError, IdleTimeout};
use std::time::Duration;

/// Largest request body the edge buffers for an origin request.
pub(super) const MAX_REQUEST_BODY: usize = 10 << 20;
/// A viewer's request body may go this long without data before it gets 408.
const REQUEST_BODY_IDLE: Duration = Duration::from_secs(10);

type Reading<B> = Limited<IdleTimeout<B>>;

/// A refused request's unread body is read and dropped for at most this long, and this
/// much, after its answer: closing a connection with unread data makes the kernel reset
/// it, and the client may lose the answer (a 401 or 429) to the reset (a lingering
/// close, as nginx's).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// The start of a body: what came before protection, and the body to read the rest from
/// (None once it ended).
pub(super) struct BodyStart<B> {
    /// The chunks read, as they came: one chunk (most bodies) is passed on without a copy.
    read: Vec<Bytes>,
    len: usize,
    rest: Option<std::pin::Pin<Box<Reading<B>>>>,
}

impl<B> BodyStart<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    /// Reads `b` until more than `inspect` bytes came or it ended (nothing when no rule
    /// inspects bodies): the answer that refuses it instead when it is too large, stalls
    /// or breaks.
    pub(super) async fn read(b: B, inspect: usize) -> Result<Self, Response<Body>> {
        if b.size_hint().lower() as usize > MAX_REQUEST_BODY {
            return Err(too_large());
        }
        let rest = (!b.is_end_stream()).then(|| {
            Box::pin(Limited::new(
                IdleTimeout::new(b, REQUEST_BODY_IDLE),
                MAX_REQUEST_BODY,
            ))
        });
        let mut start = BodyStart {
            read: Vec::new(),
            len: 0,
            rest,
        };
        if inspect > 0 {
            start.read_until(inspect).await?;
            // Inspected as one slice.
            if start.read.len() > 1 {
                start.read = vec![start.joined()];
            }
        }
        Ok(start)
    }

    /// What protection inspects: at most `inspect` bytes, and whether the body goes on.
    pub(super) fn inspected(&self, inspect: usize) -> (&[u8], bool) {
        let first = self.read.first().map_or(&[][..], |b| &b[..]);
        (&first[..first.len().min(inspect)], self.len > inspect)
    }

    /// The whole body, read on from where [`BodyStart::read`] stopped.
    pub(super) async fn whole(mut self) -> Result<Bytes, Response<Body>> {
        self.read_until(usize::MAX).await?;
        Ok(match self.read.len() {
            1 => self.read.swap_remove(0),
            _ => self.joined(),
        })
    }

    /// Reads and drops what is left of a refused request's body, on a task of its own
    /// within [`LINGER`] and [`LINGER_BYTES`], so that its answer reaches the client
    /// before the connection closes.
    pub(super) fn linger(start: Option<Self>)
    where
        B: Send + 'static,
    {
        let Some(mut body) = start.and_then(|s| s.rest) else {
            return;
        };
        tokio::spawn(async move {
            let drain = async {
                let mut drained = 0;
                while drained < LINGER_BYTES {
                    match body.frame().await {
                        Some(Ok(frame)) => drained += frame.data_ref().map_or(0, |d| d.len()),
                        _ => return,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }

    fn joined(&self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.len);
        for chunk in &self.read {
            all.extend_from_slice(chunk);
        }
        all.freeze()
    }

    async fn read_until(&mut self, want: usize) -> Result<(), Response<Body>> {
        while self.len <= want {
            let Some(body) = self.rest.as_mut() else {
                break;
            };
            match body.frame().await {
                None => self.rest = None,
                Some(Ok(frame)) => {
                    // Trailers are not forwarded on a buffered request.
                    if let Ok(data) = frame.into_data() {
                        self.len += data.len();
                        self.read.push(data);
                    }
                }
                Some(Err(e)) => return Err(refusal(e)),
            }
        }
        Ok(())
    }
}

/// The answer to a body that could not be read whole.
fn refusal(e: BoxError) -> Response<Body> {
    if e.is::<http_body_util::LengthLimitError>() {
        too_large()
    } else if e.is::<meridian_http::Idle>() {
        meridian_http::text(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body stalled: {e}"),
        )
    } else {
        meridian_http::text(
            StatusCode::BAD_REQUEST,
            "the request body could not be read",
        )
    }
}

fn too_large() -> Response<Body> {
    meridian_http::text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body exceeds {}",
            meridian_config::ByteSize(MAX_REQUEST_BODY as u64)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    fn chunks(parts: &[&'static [u8]]) -> impl HttpBody<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn protection_sees_the_start_and_the_rest_is_read_after() {
        let start = BodyStart::read(chunks(&[b"abc", b"def", b"ghi", b"jkl"]), 4)
            .await
            .unwrap();
        // Read as far as the inspection limit and a little past, not to the end.
        assert_eq!(start.len, 6);
        assert!(start.rest.is_some());
        assert_eq!(start.inspected(4), (&b"abcd"[..], true));
        assert_eq!(&start.whole().await.unwrap()[..], b"abcdefghijkl");

        let short = BodyStart::read(chunks(&[b"ab"]), 4).await.unwrap();
        assert_eq!(short.inspected(4), (&b"ab"[..], false));
        assert_eq!(&short.whole().await.unwrap()[..], b"ab");
    }
}
