//! The balancer's HTTP/1.1 connections to its targets, each driven by the request that
//! uses it.
//!
//! hyper's pooled client runs every connection in a task of its own: a request is handed
//! to that task through a channel, and the response head and every body chunk come back
//! the same way, each hand-over a wake-up of another task. Here the request's own task
//! polls the connection (while waiting for the head, then while the body is read), and an
//! idle connection sits in the pool unpolled; a connection the target closed meanwhile is
//! noticed when it is taken out (polled once: it ends) and another is used.
//!
//! WebSocket handshakes and HTTP/2 target groups keep hyper's pooled client
//! (`proxy.rs`): an upgraded connection and a multiplexed one outlive any one request.

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use meridian_http::failover::{Fault, Upstream};
use meridian_http::Body;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

type Conn = Connection<TokioIo<TcpStream>, Body>;

/// One open connection: the half that sends and the half that does the I/O.
struct Open {
    tx: SendRequest<Body>,
    /// None once it has ended.
    conn: Option<Conn>,
}

impl Open {
    /// Polls the connection once; true when it has ended (closed by the target, or
    /// failed): it cannot be used again. An ended connection is dropped at once: a
    /// request still queued on it comes back (hyper returns it as not sent) rather than
    /// waiting on a connection nothing polls any more.
    fn poll_ended(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = &mut self.conn else {
            return true;
        };
        if Pin::new(conn).poll(cx).is_ready() {
            self.conn = None;
            return true;
        }
        false
    }
}

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
    #[error("HTTP handshake with {0} failed")]
    Handshake(SocketAddr, #[source] hyper::Error),
    #[error("request to {0} failed")]
    Request(SocketAddr, #[source] hyper::Error),
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
type Idle = HashMap<SocketAddr, Vec<(Box<Open>, Instant)>, BuildHasherDefault<AddrHasher>>;

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
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for list in idle.values_mut() {
            list.retain_mut(|(open, since)| {
                now.duration_since(*since) < self.idle_timeout && !open.poll_ended(&mut cx)
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
    fn take(&self, addr: SocketAddr) -> Option<Box<Open>> {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        // The oldest are first: those past the idle timeout go.
        let stale = list
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= self.0.idle_timeout)
            .count();
        list.drain(..stale);
        list.pop().map(|(open, _)| open)
    }

    /// Puts a connection whose exchange ended cleanly back, ready for the next request.
    fn give_back(&self, addr: SocketAddr, open: Box<Open>) {
        if !open.tx.is_ready() {
            return;
        }
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr).or_default();
        if list.len() < self.0.max_idle_per_target {
            list.push((open, Instant::now()));
        }
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Box<Open>, PoolError> {
        let tcp = tokio::time::timeout(self.0.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| PoolError::ConnectTimeout(addr, self.0.connect_timeout))?
            .map_err(|source| PoolError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let (tx, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| PoolError::Handshake(addr, e))?;
        Ok(Box::new(Open {
            tx,
            conn: Some(conn),
        }))
    }

    /// A connection to `addr`: an idle one that wants a request, else a new one. The bool
    /// says whether it was reused. An idle connection is not polled here: one the target
    /// closed meanwhile ends on the first poll of the exchange, before the request is
    /// written (the connection reads before it writes), and the request comes back unsent
    /// ([`Pool::send`] then takes another).
    async fn checkout(&self, addr: SocketAddr) -> Result<(Box<Open>, bool), PoolError> {
        while let Some(open) = self.take(addr) {
            if open.conn.is_some() && open.tx.is_ready() {
                return Ok((open, true));
            }
        }
        Ok((self.connect(addr).await?, false))
    }

    /// Sends `req` to `addr` and resolves with the response head; the body drives the
    /// connection on, and gives it back when it has been read to its end.
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<Body>,
    ) -> Result<Response<Driven>, PoolError> {
        if !req.headers().contains_key(http::header::HOST) {
            if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
                req.headers_mut().insert(http::header::HOST, host);
            }
        }
        loop {
            let (mut open, reused) = self.checkout(addr).await?;
            let sent = open.tx.try_send_request(req);
            tokio::pin!(sent);
            let mut ended = false;
            let head = std::future::poll_fn(|cx| {
                // The connection first: it writes the request and reads the answer.
                if !ended {
                    ended = open.poll_ended(cx);
                }
                // Only that poll completes the answer (or, ending, cancels the request), and
                // this one follows it: the answer needs no waker of its own, and with this
                // task's it would wake the task again, a whole poll of the request for
                // nothing.
                sent.as_mut()
                    .poll(&mut Context::from_waker(std::task::Waker::noop()))
            })
            .await;
            match head {
                Ok(res) => {
                    let (parts, incoming) = res.into_parts();
                    let mut body = Driven {
                        addr,
                        pool: Some(self.clone()),
                        open: (!ended).then_some(open),
                        body: incoming,
                    };
                    if body.body.is_end_stream() {
                        body.release();
                    }
                    return Ok(Response::from_parts(parts, body));
                }
                Err(mut e) => match e.take_message() {
                    // A reused connection closed before the request went out (the target
                    // timed it out as it was taken): the request goes on a fresh one.
                    Some(back) if reused => req = back,
                    _ => return Err(PoolError::Request(addr, e.into_error())),
                },
            }
        }
    }
}

/// A target's response body that polls its connection as it is read, and hands the
/// connection back to the pool at its end (dropped before its end, the connection closes).
/// From hyper's pooled client ([`Legacy`]) it is the plain body (`open` None).
pub(crate) struct Driven {
    addr: SocketAddr,
    pool: Option<Pool>,
    /// Boxed: a connection is large, and the body is moved through every future of the
    /// request path (each move a copy).
    open: Option<Box<Open>>,
    body: Incoming,
}

impl Driven {
    fn plain(body: Incoming) -> Self {
        Driven {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            pool: None,
            open: None,
            body,
        }
    }

    /// The body is done: the connection goes back to the pool when it is ready for
    /// another request (not when the target said `Connection: close`).
    fn release(&mut self) {
        let (Some(mut open), Some(pool)) = (self.open.take(), &self.pool) else {
            return;
        };
        // One more poll lets the connection take in the end of the exchange and say it
        // wants the next request.
        let waker = std::task::Waker::noop();
        if open.poll_ended(&mut Context::from_waker(waker)) {
            return;
        }
        pool.give_back(self.addr, open);
    }
}

impl HttpBody for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let driven = match &mut this.open {
            Some(open) => {
                if open.poll_ended(cx) {
                    // Ended: the body has what it will get (or its error); nothing to reuse.
                    this.open = None;
                }
                true
            }
            None => false,
        };
        // Driven here, the body gets its frames only from the poll above, which this one
        // follows: as for the head (`Pool::send`), its waker would only wake this task
        // again for nothing. Driven elsewhere (hyper's pool, or ended), it needs this task's.
        let noop = &mut Context::from_waker(std::task::Waker::noop());
        let frame = Pin::new(&mut this.body).poll_frame(if driven { noop } else { cx });
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => this.open = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The pool, with the target's address taken from the request's URI authority.
impl Upstream for Pool {
    type Body = Driven;
    type Error = PoolError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Driven>, PoolError>> + Send>>;

    fn send(&self, req: Request<Body>) -> Self::Future {
        let addr = target_of(&req);
        let pool = self.clone();
        Box::pin(async move {
            let addr = addr?;
            let (mut parts, body) = req.into_parts();
            // The target gets the origin form (`/path?query`), as from hyper's client.
            if let Some(pq) = parts.uri.path_and_query().cloned() {
                parts.uri = pq.into();
            }
            pool.send(addr, Request::from_parts(parts, body)).await
        })
    }

    fn fault(e: &PoolError) -> Fault {
        match e {
            PoolError::Connect { .. }
            | PoolError::ConnectTimeout(..)
            | PoolError::Handshake(..) => Fault::Connect,
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
