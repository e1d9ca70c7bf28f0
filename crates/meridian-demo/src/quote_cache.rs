//! Quotes read through the region's Redis, as the seed's API caches them in ElastiCache:
//! GET the quote, and on a miss produce it and SET it with a short TTL.
//!
//! The cache is an optimisation, never a dependency: every call has a short deadline, and a
//! circuit stops asking a Redis that failed for a while, so a dead or frozen cache costs
//! one deadline and then nothing, and quotes keep being served (a bypass), never a 5xx.

use meridian_resp::{Client, RespError};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The response header that says how a quote was served: `hit`, `miss` or `bypass`.
pub const QUOTE_CACHE_HEADER: &str = "meridian-quote-cache";

/// Connections kept open between requests; more are opened under load and closed after.
const MAX_IDLE: usize = 32;

/// Where the region's Redis is and how patient to be with it.
#[derive(Debug, Clone)]
pub struct QuoteCacheOptions {
    /// The region's primary endpoint: always leads to the cluster's current primary.
    pub endpoint: SocketAddr,
    /// The cache tier's password, re-read so a rotation needs no restart (the previous one
    /// is tried during its grace); None for a Redis without one.
    pub password: Option<meridian_http::secrets::Secret>,
    /// How long a cached quote lives: short, so a price is never much older than the feed.
    pub ttl: Duration,
    /// The most one Redis step (connect and look up, or store) may add to a request.
    pub timeout: Duration,
    /// How long the circuit stays open after a failure before one request tries again.
    pub cooldown: Duration,
}

impl QuoteCacheOptions {
    /// The endpoint with the usual limits: a 1 s TTL, a 100 ms deadline, a 1 s cooldown.
    pub fn new(
        endpoint: SocketAddr,
        password: Option<meridian_http::secrets::Secret>,
    ) -> QuoteCacheOptions {
        QuoteCacheOptions {
            endpoint,
            password,
            ttl: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            cooldown: Duration::from_secs(1),
        }
    }
}

/// How one quote was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From Redis.
    Hit,
    /// Produced here and stored in Redis.
    Miss,
    /// Produced here without Redis: it failed, or its circuit is open.
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }
}

/// Whether Redis is asked at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed,
    /// Failed lately: nobody asks until `until`.
    Open {
        until: Instant,
    },
    /// One request is finding out whether Redis is back; the others bypass meanwhile. A
    /// probe whose request was dropped never reports: after `until` another may probe.
    Probing {
        until: Instant,
    },
}

pub(crate) struct QuoteCache {
    opts: QuoteCacheOptions,
    idle: Mutex<Vec<Client>>,
    circuit: Mutex<Circuit>,
}

impl QuoteCache {
    pub(crate) fn new(opts: QuoteCacheOptions) -> QuoteCache {
        QuoteCache {
            opts,
            idle: Mutex::new(Vec::new()),
            circuit: Mutex::new(Circuit::Closed),
        }
    }

    pub(crate) fn endpoint(&self) -> SocketAddr {
        self.opts.endpoint
    }

    /// Whether requests are asking Redis now (false while the circuit is open).
    pub(crate) fn is_closed(&self) -> bool {
        *lock(&self.circuit) == Circuit::Closed
    }

    /// The value under `key` from Redis when it is there and `accept`able; else the one
    /// `produce` makes, stored for the TTL when Redis answers.
    pub(crate) async fn read_through(
        &self,
        key: &str,
        accept: impl Fn(&[u8]) -> bool,
        produce: impl Future<Output = Vec<u8>>,
    ) -> (Vec<u8>, Outcome) {
        if !self.admit() {
            return (produce.await, Outcome::Bypass);
        }
        let looked_up = match tokio::time::timeout(self.opts.timeout, self.get(key)).await {
            Ok(r) => r,
            Err(_) => Err(RespError::Timeout {
                addr: self.opts.endpoint,
                waited: self.opts.timeout,
            }),
        };
        let mut client = match looked_up {
            Ok((Some(value), client)) if accept(&value) => {
                self.succeeded(client);
                return (value, Outcome::Hit);
            }
            // Missing, or something else under our key: produce it and store ours.
            Ok((_, client)) => client,
            Err(e) => {
                self.failed(&e);
                return (produce.await, Outcome::Bypass);
            }
        };
        let value = produce.await;
        let stored = tokio::time::timeout(
            self.opts.timeout,
            client.set_with_ttl(key, &value, self.opts.ttl),
        )
        .await;
        match stored {
            Ok(Ok(())) => self.succeeded(client),
            Ok(Err(e)) => self.failed(&e),
            Err(_) => self.failed(&RespError::Timeout {
                addr: self.opts.endpoint,
                waited: self.opts.timeout,
            }),
        }
        (value, Outcome::Miss)
    }

    /// GET on a pooled connection, or on a new one when there is none or the pooled one was
    /// cut (an idle timeout, or the endpoint changing primary).
    async fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Client), RespError> {
        let pooled = lock(&self.idle).pop();
        if let Some(mut client) = pooled {
            match client.get(key).await {
                Ok(v) => return Ok((v, client)),
                Err(RespError::Io { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let passwords = self
            .opts
            .password
            .as_ref()
            .map(|p| p.candidates())
            .unwrap_or_default();
        let mut client =
            Client::connect_any(self.opts.endpoint, &passwords, self.opts.timeout).await?;
        let value = client.get(key).await?;
        Ok((value, client))
    }

    /// Whether this request may ask Redis; after the cooldown, the first to come probes.
    fn admit(&self) -> bool {
        let mut circuit = lock(&self.circuit);
        let now = Instant::now();
        match *circuit {
            Circuit::Closed => true,
            Circuit::Open { until } | Circuit::Probing { until } if now >= until => {
                // Both steps' deadlines, and then some: a live probe has finished by then.
                *circuit = Circuit::Probing {
                    until: now + self.opts.timeout * 3,
                };
                true
            }
            Circuit::Open { .. } | Circuit::Probing { .. } => false,
        }
    }

    fn succeeded(&self, client: Client) {
        {
            let mut circuit = lock(&self.circuit);
            if *circuit != Circuit::Closed {
                tracing::info!(endpoint = %self.opts.endpoint, "the quote cache answers again");
                *circuit = Circuit::Closed;
            }
        }
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(client);
        }
    }

    fn failed(&self, error: &RespError) {
        let mut circuit = lock(&self.circuit);
        if *circuit == Circuit::Closed {
            tracing::warn!(%error, cooldown = ?self.opts.cooldown, "the quote cache is bypassed");
        }
        *circuit = Circuit::Open {
            until: Instant::now() + self.opts.cooldown,
        };
        // Connections to a failing server are suspect: start again with new ones.
        lock(&self.idle).clear();
    }
}

/// A poisoned lock still holds a usable circuit or pool: a panic elsewhere must not stop
/// quotes.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cache(endpoint: SocketAddr) -> QuoteCache {
        let mut opts = QuoteCacheOptions::new(endpoint, None);
        opts.timeout = Duration::from_millis(100);
        opts.cooldown = Duration::from_millis(300);
        QuoteCache::new(opts)
    }

    async fn produce() -> Vec<u8> {
        b"fresh".to_vec()
    }

    /// A server that accepts connections and never answers: a frozen Redis.
    async fn silent_server() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        addr
    }

    /// A Redis that answers every GET with `value` and every SET with OK.
    async fn fixed_server(value: &'static [u8]) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let reply = if buf[..n].windows(3).any(|w| w == b"GET") {
                            let mut r = format!("${}\r\n", value.len()).into_bytes();
                            r.extend_from_slice(value);
                            r.extend_from_slice(b"\r\n");
                            r
                        } else {
                            b"+OK\r\n".to_vec()
                        };
                        if s.write_all(&reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_frozen_redis_costs_one_deadline_then_nothing_until_the_cooldown() {
        let c = cache(silent_server().await);
        let started = Instant::now();
        let (v, outcome) = c.read_through("k", |_| true, produce()).await;
        assert_eq!((v.as_slice(), outcome), (&b"fresh"[..], Outcome::Bypass));
        let first = started.elapsed();
        assert!(first >= Duration::from_millis(90), "{first:?}");
        assert!(first < Duration::from_millis(600), "{first:?}");
        assert!(!c.is_closed());
        // The circuit is open: the next requests do not wait at all.
        let started = Instant::now();
        for _ in 0..20 {
            let (_, outcome) = c.read_through("k", |_| true, produce()).await;
            assert_eq!(outcome, Outcome::Bypass);
        }
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_a_bypass_and_the_circuit_probes_after_the_cooldown() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let c = cache(addr);
        let (_, outcome) = c.read_through("k", |_| true, produce()).await;
        assert_eq!(outcome, Outcome::Bypass);
        assert!(!c.admit(), "open right after a failure");
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(c.admit(), "the first request after the cooldown probes");
        assert!(!c.admit(), "only one probes at a time");
    }

    #[tokio::test]
    async fn a_value_that_is_not_ours_is_a_miss_and_is_replaced() {
        let c = cache(fixed_server(b"something else").await);
        let (v, outcome) = c
            .read_through("k", |v| v.starts_with(b"fresh"), produce())
            .await;
        assert_eq!((v.as_slice(), outcome), (&b"fresh"[..], Outcome::Miss));
        let (v, outcome) = c.read_through("k", |_| true, produce()).await;
        assert_eq!(
            (v.as_slice(), outcome),
            (&b"something else"[..], Outcome::Hit)
        );
        assert!(c.is_closed());
    }
}
