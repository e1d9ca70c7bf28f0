//! One served connection: whether a request is in flight, and how the connection ends
//! (server shutdown, or idle too long).

use crate::body::BoxError;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Requests in flight on one connection, and when the last one ended.
pub(crate) struct Activity {
    born: Instant,
    open: AtomicUsize,
    /// Milliseconds from `born` to the end of the last request.
    last_ms: AtomicU64,
    /// Set when the server needs this connection's place (see [`Registry::evict_idlest`]).
    evicted: tokio::sync::Notify,
    /// The connection's place under the server's cap, given back when the last holder
    /// of this goes: the connection, or a tunnel it became (`upgrade.rs`).
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Tunnels this connection became that are still open ([`TunnelHold`]).
    tunnels: AtomicUsize,
    tunnel_ended: tokio::sync::Notify,
    /// The client's address: at the cap, the address holding most connections gives way
    /// first ([`Registry::evict_idlest`]).
    peer: Option<IpAddr>,
}

impl Activity {
    /// A connection's activity, holding its place under the server's cap.
    pub(crate) fn new(
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
        peer: Option<IpAddr>,
    ) -> Self {
        Activity {
            peer,
            born: Instant::now(),
            open: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            evicted: tokio::sync::Notify::new(),
            _permit: permit,
            tunnels: AtomicUsize::new(0),
            tunnel_ended: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once no tunnel this connection became is open: the connection's task
    /// (and its place in the registry) lasts as long as its tunnels.
    pub(crate) async fn tunnels_closed(&self) {
        loop {
            let ended = self.tunnel_ended.notified();
            if self.tunnels.load(Ordering::Acquire) == 0 {
                return;
            }
            ended.await;
        }
    }

    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.open.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves when the server needs this connection's place.
    pub(crate) async fn evicted(&self) {
        self.evicted.notified().await
    }

    /// When the connection last had nothing in flight; None while a request is.
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.last_end())
    }

    /// When the connection's last request ended (or it opened): while one is in flight,
    /// no later than that request began.
    fn last_end(&self) -> Instant {
        self.born + Duration::from_millis(self.last_ms.load(Ordering::Acquire))
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let due = match self.idle_since() {
                Some(since) if since + idle <= Instant::now() => return,
                Some(since) => since + idle,
                None => Instant::now() + idle,
            };
            // With a grace: a request that came while the process was frozen is read
            // (the connection busy again) before its idle time is up.
            crate::grace_timer::GraceSleep::until(due.into_std()).await;
        }
    }
}

/// The open connections of one server, so that at its connection cap the one idle longest
/// can make room: an attacker holding thousands of idle or trickling connections (a
/// slowloris) is pushed out by real clients instead of locking them out.
#[derive(Default)]
pub(crate) struct Registry {
    next: AtomicU64,
    open: std::sync::Mutex<HashMap<u64, Arc<Activity>>>,
}

/// A connection's place in the registry, given back when the connection ends.
pub(crate) struct Registered(Arc<Registry>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

impl Registry {
    pub(crate) fn register(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, activity);
        Registered(self.clone(), id)
    }

    /// Closes the connection that has had nothing in flight for longest (a half-sent
    /// request head counts as nothing). When every connection has a request in flight
    /// (or is a tunnel), one busy for over `busy` goes: of the address holding the most
    /// connections, the one busy longest. A client trickling bodies or holding tunnels
    /// cannot keep everyone else out, nor push out another client's one long request;
    /// false when no connection qualifies.
    pub(crate) fn evict_idlest(&self, busy: Duration) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let idlest = open
            .iter()
            .filter_map(|(id, a)| Some((a.idle_since()?, *id)))
            .min();
        let longest_busy = || {
            let before = Instant::now().checked_sub(busy)?;
            // Counted only here, at the cap: the accept path pays nothing for it.
            let mut held: HashMap<Option<IpAddr>, usize> = HashMap::new();
            for a in open.values() {
                *held.entry(a.peer).or_default() += 1;
            }
            open.iter()
                .filter(|(_, a)| a.last_end() <= before)
                .map(|(id, a)| {
                    let most = std::cmp::Reverse(held.get(&a.peer).copied().unwrap_or(0));
                    (most, a.last_end(), *id)
                })
                .min()
                .map(|(_, since, id)| (since, id))
        };
        match idlest
            .or_else(longest_busy)
            .and_then(|(_, id)| open.get(&id))
        {
            Some(a) => {
                a.evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A served connection's place under its server's cap and in its registry, carried by an
/// upgrade request into the tunnel it becomes: the tunnel counts as a request in flight
/// (the connection is not idle while it lives), its connection's task waits for it, and it
/// ends when the server evicts it.
///
/// The server puts one in the extensions of every request that may become a tunnel; an
/// application that serves WebSockets itself keeps it (`Extension<TunnelHold>` in axum) for
/// as long as its socket, else the connection looks idle under its tunnels.
pub struct TunnelHold {
    inflight: InFlight,
    /// The tunnel of an HTTP/2 extended CONNECT: one stream of a connection that goes on
    /// serving, so an eviction ends the connection (and every stream on it), not the tunnel.
    stream: bool,
}

impl TunnelHold {
    /// The hold of an HTTP/1.1 upgrade: the tunnel is the whole connection.
    pub(crate) fn new(activity: &Arc<Activity>) -> Self {
        Self::held(activity, false)
    }

    /// The hold of an HTTP/2 extended CONNECT stream.
    pub(crate) fn for_stream(activity: &Arc<Activity>) -> Self {
        Self::held(activity, true)
    }

    fn held(activity: &Arc<Activity>, stream: bool) -> Self {
        activity.tunnels.fetch_add(1, Ordering::AcqRel);
        TunnelHold {
            inflight: activity.start(),
            stream,
        }
    }

    /// Resolves when the server needs the connection's place (never for a stream's tunnel:
    /// the connection's own task is evicted, and its streams end with it).
    pub async fn evicted(&self) {
        if self.stream {
            return std::future::pending().await;
        }
        self.inflight.0.evicted().await
    }
}

impl Clone for TunnelHold {
    fn clone(&self) -> Self {
        Self::held(&self.inflight.0, self.stream)
    }
}

impl Drop for TunnelHold {
    fn drop(&mut self) {
        let a = &self.inflight.0;
        a.tunnels.fetch_sub(1, Ordering::AcqRel);
        a.tunnel_ended.notify_waiters();
    }
}

/// One request, from the service's call until its response body is sent or dropped.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.born.elapsed().as_millis() as u64;
        self.0.last_ms.store(ms, Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A service that counts its requests in flight on the connection's [`Activity`].
/// It also opens each HTTP/1.1 request to interim heads until its response is ready.
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    interim: Arc<crate::interim::Shared>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(
        inner: S,
        activity: Arc<Activity>,
        interim: Arc<crate::interim::Shared>,
    ) -> Self {
        Tracked {
            inner,
            activity,
            interim,
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        // A connection that becomes a tunnel keeps its place under the cap while the
        // tunnel lives, after hyper has let the connection go.
        if req.headers().contains_key(http::header::UPGRADE) {
            req.extensions_mut().insert(TunnelHold::new(&self.activity));
        } else if crate::ws_handshake::extended_connect(
            req.version(),
            req.method(),
            req.extensions(),
        ) {
            req.extensions_mut()
                .insert(TunnelHold::for_stream(&self.activity));
        }
        // RFC 9110 §15.2: no 1xx to an HTTP/1.0 client; HTTP/2 frames its own.
        let interim = (req.version() == http::Version::HTTP_11)
            .then(|| (self.interim.clone(), self.interim.begin()));
        TrackedFuture {
            guard: Some(self.activity.start()),
            interim,
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
        interim: Option<(Arc<crate::interim::Shared>, u64)>,
    }

    // A request dropped before its answer (the client went away) takes no more heads.
    impl<F> PinnedDrop for TrackedFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some((shared, seq)) = this.project().interim.take() {
                shared.end(seq);
            }
        }
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx));
        if let Some((shared, seq)) = this.interim.take() {
            shared.end(seq);
        }
        let res = res?;
        let guard = this.guard.take();
        Poll::Ready(Ok(res.map(|body| TrackedBody {
            body,
            _guard: guard,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is sent.
    pub(crate) struct TrackedBody<B> {
        #[pin]
        body: B,
        _guard: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `conn` to its end. When the server stops, or when nothing has been in flight
/// for `idle`, the connection is asked to close gracefully (`graceful`): open requests
/// finish, HTTP/2 clients get a GOAWAY.
/// `conn` comes boxed: passed by value into an async fn and pinned there, a future is
/// stored twice in the caller's state (the argument and the pinned local), and a serving
/// future wrapped twice that way made every connection cost about 30 KiB.
pub(crate) async fn run<C, G, E>(
    mut conn: Pin<Box<C>>,
    graceful: G,
    activity: &Activity,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    C: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
    G: Fn(Pin<&mut C>),
{
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r.map_err(Into::into),
            _ = stop.wait_for(|s| *s), if !closing => {
                graceful(conn.as_mut());
                closing = true;
            }
            _ = activity.idle_for(idle), if !closing => {
                graceful(conn.as_mut());
                closing = true;
            }
            // Its place is needed and it has nothing in flight: dropped, not drained.
            _ = activity.evicted.notified() => return Ok(()),
        }
    }
}
