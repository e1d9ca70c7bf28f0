//! A body that fails when its source goes quiet: a peer that sends a head and then stalls
//! must not hold a proxy's connection, task and buffers forever.

use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The error an [`IdleTimeout`] body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct Idle(pub Duration);

pin_project_lite::pin_project! {
    /// Wraps a body: when it has been asked for data and has none for `idle`, it ends with
    /// [`Idle`]. Time the reader spends not asking (a slow viewer) does not count.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        idle: Duration,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            timer: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<crate::body::BoxError>,
{
    type Data = B::Data;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.timer = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let idle = *this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Idle(idle))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_quiet_source_ends_the_body_and_a_slow_reader_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|f| (f, rx)) },
            );
        let mut body = std::pin::pin!(IdleTimeout::new(
            http_body_util::StreamBody::new(stream),
            Duration::from_millis(200),
        ));
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        // The reader waits longer than the idle time before asking: data already there.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "a");
        // Now the source is quiet while the reader asks.
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(e.is::<Idle>(), "{e}");
        drop(tx);
    }
}
