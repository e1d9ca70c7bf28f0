//! The one retry/failover loop of every proxy: try candidates in the order the caller
//! gives, send, and move on to the next one only when what went wrong is safe to repeat.
//!
//! The balancer (targets of a region) and the edge (members of an origin group) differ only
//! in the [`Failover`] they pass: how candidates are ordered, what a response means, what
//! is counted and what is reported to the health board. The rules that keep a request from
//! running twice live here, once: a failed connect means the request never left, so any
//! method may go elsewhere; after that, only a request that is [`Failover::replayable`].

use crate::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::{Client, Error};
use std::future::Future;
use std::time::Duration;
// tokio's clock: a deadline made from `started` reads the clock once for both.
use tokio::time::Instant;

/// What went wrong sending to one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The connection could not be made: the request never left.
    Connect,
    /// The connection was reset or aborted under the request (the peer is likely gone).
    Reset,
    /// Any other transport error after the request may have been sent.
    Io,
    /// No response head within the timeout.
    Timeout,
}

impl Fault {
    /// The kind of a transport error that is not a connect failure, from its causes: a
    /// reset or aborted connection, or any other I/O failure. For upstreams other than the
    /// pooled client (`Upstream::fault`).
    pub fn after_connect(e: &(dyn std::error::Error + 'static)) -> Fault {
        if was_reset(e) {
            Fault::Reset
        } else {
            Fault::Io
        }
    }

    /// The label metrics use for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Connect => "connect",
            Fault::Reset => "reset",
            Fault::Io => "io",
            Fault::Timeout => "timeout",
        }
    }

    fn of(e: &Error) -> Fault {
        if e.is_connect() {
            Fault::Connect
        } else {
            Fault::after_connect(e)
        }
    }
}

/// Whether a client error is its connection being reset or aborted under the request.
fn was_reset(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = src {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        src = err.source();
    }
    false
}

/// Why a request moves on to the next candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The transport failed.
    Fault(Fault),
    /// The candidate answered, but with something the caller would rather not relay (a
    /// failover status).
    Answer,
    /// The candidate was slow to answer, so the next one was asked as well.
    Hedge,
}

/// What the caller makes of a response head.
pub enum Verdict<T> {
    /// The loop's result: stop here.
    Done(T),
    /// Try the next candidate.
    Next(Reason),
}

/// What [`run_on`] sends through: a caller's own pool (the balancer drives its connections
/// in the request's task, `meridian-lb`'s `pool.rs`). [`run`] takes hyper's pooled client.
pub trait Upstream {
    /// The response body it yields.
    type Body;
    /// Why a send failed.
    type Error: std::error::Error + 'static;
    /// What [`Upstream::send`] returns: a named type, so that the loop's own future is
    /// seen to be `Send` wherever it is awaited.
    type Future: Future<Output = Result<Response<Self::Body>, Self::Error>> + Send;
    /// Sends one request and resolves with the response head.
    fn send(&self, req: Request<Body>) -> Self::Future;
    /// What kind of failure `e` is.
    fn fault(e: &Self::Error) -> Fault;
}

/// What one use of the loop decides for itself. `B` and `E` are the response body and
/// the error of the [`Upstream`] it runs over (hyper's pooled client by default).
pub trait Failover<B = Incoming, E = Error> {
    /// One thing to send to (a target, an origin member), with whatever the caller keeps
    /// for it while the request is out.
    type Candidate;
    /// What the loop gives back.
    type Output;

    /// Whether the request may be sent again after it may have reached a candidate: its
    /// method's repetition is harmless and its body is held whole.
    fn replayable(&self) -> bool;

    /// Whether a candidate that timed out may be passed over (a replayable request only).
    fn retry_timeouts(&self) -> bool;

    /// The next candidate, or `None` when there is none left to try.
    fn next(&mut self) -> Option<Self::Candidate>;

    /// Whether another turn follows the current one: a retry is counted only then.
    fn more(&self) -> bool;

    /// The request for `c`; an `Err` ends the loop with that result.
    fn request(&mut self, c: &mut Self::Candidate) -> Result<Request<Body>, Self::Output>;

    /// A response head arrived from `c` after `elapsed`.
    fn answered(
        &mut self,
        c: Self::Candidate,
        res: Response<B>,
        elapsed: Duration,
    ) -> impl Future<Output = Verdict<Self::Output>> + Send;

    /// Sending to `c` failed (`error` is `None` for a timeout): count it, report it.
    fn failed(&mut self, c: &mut Self::Candidate, fault: Fault, error: Option<&E>);

    /// The failure on `c` may not be passed over: the loop's result.
    fn stopped(&mut self, c: Self::Candidate, fault: Fault) -> Self::Output;

    /// The request moves on to the next candidate for `reason`.
    fn retrying(&mut self, reason: Reason);

    /// No candidate is left: the loop's result.
    fn exhausted(self) -> Self::Output;

    /// How long to wait for the current candidate's response head before also asking the
    /// next one (a hedged request); None: never hedge. Asked only for a replayable request
    /// with another candidate left. The first head to arrive is used and the other request
    /// is cancelled.
    fn hedge_after(&mut self) -> Option<Duration> {
        None
    }

    /// The hedge delay passed without a head: whether to send the hedge now (a budget).
    fn may_hedge(&mut self) -> bool {
        true
    }
}

/// Sends through `client` to each candidate of `f` in turn, each given `timeout` for its
/// response head, until one answers for good or none is left. A replayable request may be
/// hedged: after [`Failover::hedge_after`] without a head, the next candidate is asked too.
///
/// This and the functions below return `async move` blocks rather than being `async fn`s:
/// an `async fn` keeps each argument twice in its state (as given and as its local), and
/// every proxied request allocates and copies the nested state whole.
pub fn run<'a, C, F>(
    client: &'a Client<C, Body>,
    timeout: Duration,
    f: F,
) -> impl Future<Output = F::Output> + use<'a, C, F>
where
    C: Connect + Clone + Send + Sync + 'static,
    F: Failover,
{
    run_with(move |req| client.request(req), Fault::of, timeout, f)
}

/// [`run`] through any [`Upstream`].
pub fn run_on<'a, U, F>(
    upstream: &'a U,
    timeout: Duration,
    f: F,
) -> impl Future<Output = F::Output> + use<'a, U, F>
where
    U: Upstream,
    F: Failover<U::Body, U::Error>,
{
    run_with(move |req| upstream.send(req), U::fault, timeout, f)
}

/// The loop itself, over a send function (a closure, not a trait bound on the client's
/// type: a bound on a type holding `Box<dyn Error>` does not hold for every lifetime, so
/// the callers' futures would not be seen to be `Send`). Not an `async fn`: that keeps
/// each argument twice in the future's state, and this future is made per request.
#[allow(clippy::manual_async_fn)]
fn run_with<B, E, S, Fut, F>(
    send: S,
    fault: fn(&E) -> Fault,
    timeout: Duration,
    mut f: F,
) -> impl Future<Output = F::Output>
where
    S: Fn(Request<Body>) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
    F: Failover<B, E>,
{
    async move {
        // A candidate left waiting when its hedge won is settled before any new one is tried.
        while let Some(mut c) = f.next() {
            let req = match f.request(&mut c) {
                Ok(r) => r,
                Err(out) => return out,
            };
            let started = Instant::now();
            let primary = tokio::time::timeout_at(started + timeout, send(req));
            tokio::pin!(primary);
            let hedge = if f.replayable() && f.more() {
                f.hedge_after()
            } else {
                None
            };
            let Some(delay) = hedge else {
                let sent = primary.await;
                match settle(fault, &mut f, c, sent, started).await {
                    Step::Return(out) => return out,
                    Step::Next => continue,
                }
            };
            let sent = tokio::select! {
                sent = &mut primary => Some(sent),
                _ = tokio::time::sleep(delay) => None,
            };
            if let Some(sent) = sent {
                match settle(fault, &mut f, c, sent, started).await {
                    Step::Return(out) => return out,
                    Step::Next => continue,
                }
            }
            // No head yet: ask the next candidate as well, and take the first head.
            let next = if f.may_hedge() { f.next() } else { None };
            let Some(mut c2) = next else {
                let sent = primary.await;
                match settle(fault, &mut f, c, sent, started).await {
                    Step::Return(out) => return out,
                    Step::Next => continue,
                }
            };
            let req2 = match f.request(&mut c2) {
                Ok(r) => r,
                Err(out) => return out,
            };
            f.retrying(Reason::Hedge);
            let started2 = Instant::now();
            let second = tokio::time::timeout_at(started2 + timeout, send(req2));
            tokio::pin!(second);
            let (first_won, sent) = tokio::select! {
                sent = &mut primary => (true, sent),
                sent = &mut second => (false, sent),
            };
            let (winner, w_started, loser, l_started) = if first_won {
                (c, started, c2, started2)
            } else {
                (c2, started2, c, started)
            };
            // A usable head ends the loop and drops the other request, which cancels it.
            if let Step::Return(out) = settle(fault, &mut f, winner, sent, w_started).await {
                return out;
            }
            // The first head was unusable: the other request, still out, may yet answer.
            let sent = if first_won {
                second.await
            } else {
                primary.await
            };
            match settle(fault, &mut f, loser, sent, l_started).await {
                Step::Return(out) => return out,
                Step::Next => continue,
            }
        }
        f.exhausted()
    }
}

/// What the loop does after one request settled.
enum Step<T> {
    Return(T),
    Next,
}

/// Makes of one request's result what the loop's rules say: the answer, or a move on.
/// Not an `async fn`, for the same reason as [`run_with`].
#[allow(clippy::manual_async_fn)]
fn settle<'f, B, E, F: Failover<B, E>>(
    fault: fn(&E) -> Fault,
    f: &'f mut F,
    mut c: F::Candidate,
    sent: Result<Result<Response<B>, E>, tokio::time::error::Elapsed>,
    started: Instant,
) -> impl Future<Output = Step<F::Output>> + use<'f, B, E, F> {
    async move {
        let fault = match sent {
            Ok(Ok(res)) => {
                return match f.answered(c, res, started.elapsed()).await {
                    Verdict::Done(out) => Step::Return(out),
                    Verdict::Next(reason) => {
                        if f.more() {
                            f.retrying(reason);
                        }
                        Step::Next
                    }
                }
            }
            Ok(Err(e)) => {
                let fault = fault(&e);
                f.failed(&mut c, fault, Some(&e));
                fault
            }
            Err(_) => {
                f.failed(&mut c, Fault::Timeout, None);
                Fault::Timeout
            }
        };
        let retryable = match fault {
            Fault::Connect => true,
            Fault::Reset | Fault::Io => f.replayable(),
            Fault::Timeout => f.retry_timeouts() && f.replayable(),
        };
        if !retryable {
            return Step::Return(f.stopped(c, fault));
        }
        if f.more() {
            f.retrying(Reason::Fault(fault));
        }
        Step::Next
    }
}
