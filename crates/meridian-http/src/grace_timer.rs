//! Timers that give one grace period when they fire ([`thaw_grace`]): our HTTP/1 loop's
//! head deadline ([`GraceSleep`]), hyper's timers ([`GraceTimer`]) for the servers hyper
//! runs (connections with request bodies, upgrades, HTTP/2 by hyper), whose head timeout
//! closed a keep-alive connection whose next request had come during a freeze, and the
//! servers' other waits ([`within`]: a write the client must take, a ping it must answer).

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

/// How much longer a connection whose head deadline fired waits before it closes, once.
/// A process that could not run for a while (frozen by SIGSTOP, a paused VM, starved of
/// CPU) wakes with its timers past due and requests already waiting in its sockets, and
/// sees the timers first (`epoll_wait` returns EINTR after a stop, and on a multi-thread
/// runtime another worker may hold the I/O driver): closing at once dropped the request a
/// client had sent on its idle connection while the PoP was frozen. Waiting a moment more
/// lets the runtime read it. Every deadline gets this, not only a late one: one due just
/// as the process thaws is not late. A slowloris gains a quarter of the head timeout.
fn thaw_grace(head_timeout: Duration) -> Duration {
    (head_timeout / 4).min(Duration::from_secs(1))
}

/// `f`'s output if it is ready within `length` (and its grace); None if not. A server's
/// timeout on the client (a write it stopped taking, a ping it did not answer), which a
/// freeze of the server must not fire: at the thaw the write's room or the ping's answer
/// is there, and the runtime may see the deadline before it sees them.
pub(crate) async fn within<F: Future>(length: Duration, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = f => Some(out),
        () = GraceSleep::after(length) => None,
    }
}

/// hyper's `Timer` on tokio's clock, each sleep given [`thaw_grace`] once past its deadline.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GraceTimer;

pin_project_lite::pin_project! {
    /// A sleep that, when its deadline passes, waits [`thaw_grace`] more once.
    pub(crate) struct GraceSleep {
        #[pin]
        inner: tokio::time::Sleep,
        grace: Option<Duration>,
    }
}

impl GraceSleep {
    pub(crate) fn after(length: Duration) -> Self {
        GraceSleep {
            inner: tokio::time::sleep(length),
            grace: Some(thaw_grace(length)),
        }
    }

    /// Due `length` from now, with that length's grace (one clock read: it is reset for
    /// every request).
    pub(crate) fn reset_after(self: Pin<&mut Self>, length: Duration) {
        let this = self.project();
        this.inner.reset(tokio::time::Instant::now() + length);
        *this.grace = Some(thaw_grace(length));
    }

    pub(crate) fn until(deadline: Instant) -> Self {
        GraceSleep {
            inner: tokio::time::sleep_until(deadline.into()),
            grace: Some(grace_for(deadline)),
        }
    }

    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.project();
        this.inner.reset(deadline.into());
        *this.grace = Some(grace_for(deadline));
    }
}

/// The grace of a timer due at `deadline`: a quarter of what is left of it, at most a
/// second.
fn grace_for(deadline: Instant) -> Duration {
    thaw_grace(deadline.saturating_duration_since(GraceTimer.now()))
}

impl Future for GraceSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            ready!(this.inner.as_mut().poll(cx));
            match this.grace.take() {
                // Polled again at once, so the new deadline registers the waker.
                Some(grace) => this
                    .inner
                    .as_mut()
                    .reset(tokio::time::Instant::now() + grace),
                None => return Poll::Ready(()),
            }
        }
    }
}

impl Sleep for GraceSleep {}

impl Timer for GraceTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(GraceSleep::until(self.now() + duration))
    }

    /// tokio's clock, as hyper's own tokio timer reads (a paused test clock included).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(GraceSleep::until(deadline))
    }

    /// In place, as hyper resets its head timer for every request.
    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<GraceSleep>() {
            Some(s) => s.reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_timer_fires_once_its_grace_is_over_too() {
        let start = tokio::time::Instant::now();
        GraceTimer.sleep(Duration::from_millis(400)).await;
        // 400 ms, then a quarter of that.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(510),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_timer_gets_the_grace_of_its_new_length() {
        let start = tokio::time::Instant::now();
        let mut s = GraceTimer.sleep(Duration::from_secs(60));
        GraceTimer.reset(&mut s, GraceTimer.now() + Duration::from_secs(8));
        s.await;
        // 8 s, then at most a second.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(9) && took < Duration::from_millis(9010),
            "{took:?}"
        );
    }
}
