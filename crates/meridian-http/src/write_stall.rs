//! A transport whose writes may wait at most so long for the peer to take anything, for
//! connections hyper serves (request bodies, upgrades): as our own HTTP/1 loop's writes
//! (`h1_server::unstalled`), a client that stops reading is let go after the idle timeout
//! instead of holding its connection and send buffer for ever.

use crate::grace_timer::GraceSleep;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project_lite::pin_project! {
    /// A transport whose writes give up after `stall` without progress.
    pub(crate) struct WriteStall<T> {
        #[pin]
        inner: T,
        stall: Duration,
        // Made the first time a write has to wait (boxed: most connections never wait),
        // then reset each time one waits again. Its grace lets a frozen server's write
        // go on at the thaw, when the client took what was written meanwhile.
        timer: Option<Pin<Box<GraceSleep>>>,
        armed: bool,
    }
}

impl<T> WriteStall<T> {
    pub(crate) fn new(inner: T, stall: Duration) -> Self {
        WriteStall {
            inner,
            stall,
            timer: None,
            armed: false,
        }
    }
}

/// A write's result, with the stall timer armed while it waits: an error once the peer
/// took nothing for the whole stall.
fn watched<R>(
    timer: &mut Option<Pin<Box<GraceSleep>>>,
    armed: &mut bool,
    stall: Duration,
    cx: &mut Context<'_>,
    res: Poll<std::io::Result<R>>,
) -> Poll<std::io::Result<R>> {
    if res.is_ready() {
        *armed = false;
        return res;
    }
    let t = timer.get_or_insert_with(|| Box::pin(GraceSleep::after(stall)));
    if !*armed {
        t.as_mut().reset_after(stall);
        *armed = true;
    }
    match t.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client took nothing written to it within the idle timeout",
        ))),
        Poll::Pending => Poll::Pending,
    }
}

impl<T: AsyncRead> AsyncRead for WriteStall<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for WriteStall<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        watched(this.timer, this.armed, *this.stall, cx, res)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        watched(this.timer, this.armed, *this.stall, cx, res)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let res = this.inner.poll_flush(cx);
        watched(this.timer, this.armed, *this.stall, cx, res)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let res = this.inner.poll_shutdown(cx);
        watched(this.timer, this.armed, *this.stall, cx, res)
    }
}
