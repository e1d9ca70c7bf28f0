//! hyper's timer, with each timer given one grace period when it fires, for the reason
//! `h1_server::thaw_grace` gives: a process that was frozen (SIGSTOP, a paused VM) wakes
//! with its timers past due and its sockets' data not yet seen, and hyper's head timeout
//! closed a keep-alive connection whose next request had come during the freeze. The
//! servers hyper runs (connections with request bodies, upgrades, HTTP/2 by hyper) get it.

use crate::h1_server::thaw_grace;
use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

/// hyper's `Timer` on tokio's clock, each sleep given [`thaw_grace`] once past its deadline.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GraceTimer;

pin_project_lite::pin_project! {
    struct GraceSleep {
        #[pin]
        inner: tokio::time::Sleep,
        grace: Option<Duration>,
    }
}

impl GraceSleep {
    fn until(deadline: Instant) -> Self {
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
