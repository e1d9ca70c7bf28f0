//! The balancer's HTTP/1.1 connections to its targets, each driven by the request that
//! uses it.
//!
//! hyper's pooled client runs every connection in a task of its own: a request is handed
//! to that task through a channel, and the response head and every body chunk come back
//! the same way, each hand-over a wake-up of another task. Here the request's own task
//! drives the connection ([`meridian_http::h1_client`]: it writes the request, reads the
//! head, and its body reads the rest), and an idle connection sits in the pool unpolled; a
//! connection the target closed meanwhile is noticed when it is taken out (it reads as
//! ended) and another is used.
//!
//! WebSocket handshakes and HTTP/2 target groups keep hyper's pooled client
//! (`proxy.rs`): an upgraded connection and a multiplexed one outlive any one request.

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use meridian_http::failover::{Fault, Upstream};
use meridian_http::h1_client::{H1Body, H1Conn, H1Error, SendError};
use meridian_http::{Body, BoxError};
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Why a request got no response head from a target.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    #[error("connect to {addr} failed")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {0} timed out after {1:?}")]
    ConnectTimeout(SocketAddr, Duration),
    #[error("request to {0} failed")]
    Request(SocketAddr, #[source] H1Error),
    /// From hyper's pooled client ([`Legacy`]).
    #[error(transparent)]
    Client(#[from] hyper_util::client::legacy::Error),
}

/// A target address's hash: FNV-1a over its bytes. The addresses are the balancer's own
/// targets, never a client's, so a hash an attacker could collide does not matter, and
/// this one costs a few instructions a byte where the default hasher costs hundreds.
#[derive(Default)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Idle connections by target address, the most recently used last in each list: found
/// in one lookup whatever the number of targets (a group takes up to 1000).
type Idle = HashMap<SocketAddr, Vec<(Box<H1Conn>, Instant)>, BuildHasherDefault<AddrHasher>>;

struct Shared {
    idle: Mutex<Idle>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_target: usize,
}

impl Shared {
    /// Drops idle connections past the idle timeout or already ended, and the targets
    /// left with none.
    fn sweep(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            list.retain_mut(|(conn, since)| {
                now.duration_since(*since) < self.idle_timeout && !conn.is_closed()
            });
        }
        idle.retain(|_, list| !list.is_empty());
    }
}

/// A keep-alive pool of HTTP/1.1 connections to targets: cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool(Arc<Shared>);

impl Pool {
    /// In a runtime, a sweeper closes idle connections past `idle_timeout` and those their
    /// target closed, and forgets targets with none left (a deregistered target's
    /// connections would otherwise stay open until it is used again, which may be never).
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            idle: Mutex::new(HashMap::default()),
            connect_timeout,
            idle_timeout,
            max_idle_per_target: 256,
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&shared);
            let every =
                (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
            rt.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(shared) = weak.upgrade() else { return };
                    shared.sweep(Instant::now());
                }
            });
        }
        Pool(shared)
    }

    /// Idle connections to `addr` now (tests look at reuse through it).
    #[cfg(test)]
    pub fn idle(&self, addr: SocketAddr) -> usize {
        let idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.get(&addr).map_or(0, |l| l.len())
    }

    /// Targets with idle connections now.
    #[cfg(test)]
    pub fn targets(&self) -> usize {
        self.0.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The most recently used idle connection to `addr` that is still young enough.
    fn take(&self, addr: SocketAddr) -> Option<Box<H1Conn>> {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        // The oldest are first: those past the idle timeout go.
        let stale = list
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= self.0.idle_timeout)
            .count();
        list.drain(..stale);
        list.pop().map(|(conn, _)| conn)
    }

    /// Puts a connection whose exchange ended cleanly back, ready for the next request.
    fn give_back(&self, addr: SocketAddr, conn: Box<H1Conn>) {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < self.0.max_idle_per_target {
            list.push((conn, Instant::now()));
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Box<H1Conn>, PoolError> {
        let tcp = tokio::time::timeout(self.0.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PoolError::ConnectTimeout(addr, self.0.connect_timeout))?
            .map_err(|source| PoolError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        Ok(Box::new(H1Conn::new(tcp).with_received_fields()))
    }

    /// A connection to `addr`: an idle one still open, else a new one. The bool says
    /// whether it was reused. One the target closed just as it was taken fails before the
    /// request is written, and the request comes back unsent ([`Pool::send_to`] then takes
    /// another).
    async fn checkout(&self, addr: SocketAddr) -> Result<(Box<H1Conn>, bool), PoolError> {
        while let Some(mut conn) = self.take(addr) {
            if !conn.is_closed() {
                return Ok((conn, true));
            }
        }
        Ok((self.connect(addr).await?, false))
    }

    /// Sends `req` to `addr` and resolves with the response head; the body reads the
    /// rest, and gives the connection back when it has been read to its end. The `Host`
    /// is set before the future is made: it holds `req` once (an `async fn` holds its
    /// arguments twice, and each request's future is allocated and copied whole).
    fn send_to(
        self,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> impl Future<Output = Result<Response<Driven>, PoolError>> {
        let written_host = req
            .extensions()
            .get::<meridian_http::h1_client::WrittenFields>()
            .is_some_and(|w| w.has_host());
        if !written_host && !req.headers().contains_key(http::header::HOST) {
            if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        async move {
            loop {
                let (conn, reused) = self.checkout(addr).await?;
                match conn.send(req).await {
                    Ok(res) => {
                        let (parts, body) = res.into_parts();
                        let mut body = Driven {
                            addr,
                            pool: Some(self.clone()),
                            body: Reading::Own(body),
                        };
                        if body.is_end_stream() {
                            body.release();
                        }
                        return Ok(Response::from_parts(parts, body));
                    }
                    // A reused connection closed before the request went out (the target
                    // timed it out as it was taken): the request goes on a fresh one.
                    Err(SendError {
                        request: Some(back),
                        ..
                    }) if reused => req = back,
                    Err(e) => return Err(PoolError::Request(addr, e.error)),
                }
            }
        }
    }
}

/// A target's response body, read from its connection as it is polled, which goes back
/// to the pool at the body's end (dropped before its end, the connection closes). From
/// hyper's pooled client ([`Legacy`]) it is hyper's body.
pub(crate) struct Driven {
    addr: SocketAddr,
    pool: Option<Pool>,
    body: Reading,
}

enum Reading {
    Own(H1Body),
    Hyper(Incoming),
}

impl Driven {
    fn plain(body: Incoming) -> Self {
        Driven {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            pool: None,
            body: Reading::Hyper(body),
        }
    }

    /// The body is done: the connection goes back to the pool when it may carry another
    /// request (not when the target said `Connection: close`).
    fn release(&mut self) {
        let (Reading::Own(body), Some(pool)) = (&mut self.body, &self.pool) else {
            return;
        };
        if let Some(conn) = body.into_reusable() {
            pool.give_back(self.addr, conn);
        }
    }
}

impl HttpBody for Driven {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match &mut this.body {
            Reading::Own(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Reading::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        };
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.is_end_stream() => this.release(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Reading::Own(b) => b.is_end_stream(),
            Reading::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Reading::Own(b) => b.size_hint(),
            Reading::Hyper(b) => b.size_hint(),
        }
    }
}

/// The pool, with the target's address taken from the request's URI authority.
impl Upstream for Pool {
    type Body = Driven;
    type Error = PoolError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Driven>, PoolError>> + Send>>;

    fn send(&self, req: Request<Body>) -> Self::Future {
        let addr = match target_of(&req) {
            Ok(addr) => addr,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (mut parts, body) = req.into_parts();
        // The target gets the origin form (`/path?query`), as from hyper's client.
        if let Some(pq) = parts.uri.path_and_query().cloned() {
            parts.uri = pq.into();
        }
        Box::pin(self.clone().send_to(addr, Request::from_parts(parts, body)))
    }

    fn fault(e: &PoolError) -> Fault {
        match e {
            PoolError::Connect { .. } | PoolError::ConnectTimeout(..) => Fault::Connect,
            PoolError::Request(_, e) => Fault::after_connect(e),
            PoolError::Client(e) if e.is_connect() => Fault::Connect,
            PoolError::Client(e) => Fault::after_connect(e),
        }
    }
}

/// hyper's pooled client, for what must outlive one request's exchange: a WebSocket
/// handshake's connection becomes the tunnel, an HTTP/2 one carries many streams. Its
/// answers come as [`Driven`] bodies that drive nothing, so one [`Failover`] serves both.
///
/// [`Failover`]: meridian_http::failover::Failover
pub(crate) struct Legacy(pub meridian_http::UpstreamClient);

impl Upstream for Legacy {
    type Body = Driven;
    type Error = PoolError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Driven>, PoolError>> + Send>>;

    fn send(&self, req: Request<Body>) -> Self::Future {
        let sent = self.0.request(req);
        Box::pin(async move {
            let res = sent.await?;
            Ok(res.map(Driven::plain))
        })
    }

    fn fault(e: &PoolError) -> Fault {
        Pool::fault(e)
    }
}

fn target_of(req: &Request<Body>) -> Result<SocketAddr, PoolError> {
    req.uri()
        .authority()
        .and_then(|a| a.as_str().parse().ok())
        .ok_or_else(|| PoolError::Connect {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a target is addressed by IP address and port",
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A target on `ip` that answers every request with `body`, counting the connections
    /// it accepts; with `close`, it closes each connection that long after its first
    /// answer (without saying so, as a target whose keep-alive timer fired does).
    async fn target(
        ip: [u8; 4],
        body: &'static str,
        close: Option<Duration>,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if s.write_all(head.as_bytes()).await.is_err()
                                || s.write_all(body.as_bytes()).await.is_err()
                            {
                                return;
                            }
                            if let Some(after) = close {
                                tokio::time::sleep(after).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> Request<Body> {
        Request::get(format!("http://{addr}/x"))
            .body(meridian_http::empty())
            .unwrap()
    }

    async fn fetch(pool: &Pool, addr: SocketAddr) -> Bytes {
        let res = Upstream::send(pool, get(addr)).await.unwrap();
        res.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn one_connection_carries_sequential_requests() {
        let (addr, accepted) = target([127, 105, 0, 1], "hello", None).await;
        let pool = Pool::new(Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..20 {
            assert_eq!(fetch(&pool, addr).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle(addr), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced() {
        let (addr, accepted) =
            target([127, 105, 0, 2], "fresh", Some(Duration::from_millis(30))).await;
        let pool = Pool::new(Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(fetch(&pool, addr).await, "fresh");
        assert_eq!(pool.idle(addr), 1, "the answer did not say close: kept");
        // The target's close reaches the pooled socket.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(fetch(&pool, addr).await, "fresh");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
        let long: &'static str = Box::leak("y".repeat(1024 * 1024).into_boxed_str());
        let (addr, accepted) = target([127, 105, 0, 3], long, None).await;
        let pool = Pool::new(Duration::from_secs(2), Duration::from_secs(60));
        let res = Upstream::send(&pool, get(addr)).await.unwrap();
        let mut body = res.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| d.len() < long.len()));
        drop(body);
        assert_eq!(pool.idle(addr), 0);
        assert_eq!(fetch(&pool, addr).await.len(), long.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(addr), 1);
    }

    /// A target that closes each connection as soon as it has answered: the next request
    /// often takes the connection as the close arrives. It may get the answer or an error
    /// (a reset, which the failover loop retries), but none may wait on a connection that
    /// ended, which nothing polls any more, until its timeout.
    #[tokio::test]
    async fn a_close_racing_the_next_request_never_strands_it() {
        let (addr, _) = target([127, 105, 0, 5], "raced", Some(Duration::ZERO)).await;
        let pool = Pool::new(Duration::from_secs(2), Duration::from_secs(60));
        let mut answered = 0;
        for i in 0..200 {
            let once = async {
                let res = Upstream::send(&pool, get(addr)).await.ok()?;
                res.into_body().collect().await.ok().map(|b| b.to_bytes())
            };
            let got = tokio::time::timeout(Duration::from_secs(2), once).await;
            let got = got.unwrap_or_else(|_| panic!("request {i} waited 2 s"));
            answered += usize::from(got.as_deref() == Some(&b"raced"[..]));
        }
        assert!(answered >= 100, "{answered} of 200 answered");
    }

    #[tokio::test]
    async fn idle_connections_are_swept_after_the_idle_timeout() {
        let (addr, accepted) = target([127, 105, 0, 6], "swept", None).await;
        let pool = Pool::new(Duration::from_secs(2), Duration::from_millis(200));
        assert_eq!(fetch(&pool, addr).await, "swept");
        assert_eq!(pool.idle(addr), 1);
        // With no request to this target, the sweeper closes it and forgets the target.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.idle(addr), 0);
        assert_eq!(pool.targets(), 0);
        assert_eq!(fetch(&pool, addr).await, "swept");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_fault() {
        let l = std::net::TcpListener::bind("127.105.0.4:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let pool = Pool::new(Duration::from_secs(2), Duration::from_secs(60));
        let Err(err) = Upstream::send(&pool, get(addr)).await else {
            panic!("a closed port answered");
        };
        assert_eq!(Pool::fault(&err), Fault::Connect, "{err}");
    }
}
