//! A WAN link in userspace: one TCP connection relayed with each direction delayed by the
//! link's one-way latency (plus jitter, a bandwidth limit, and partitions), order kept.
//!
//! A new connection also pays the TCP handshake: the client's first bytes reach the other
//! side one round trip later than they would on an open connection, as after SYN, SYN-ACK.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What one link between two places does to traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub one_way: Duration,
    /// Up to this much extra delay, at random, per burst of bytes.
    pub jitter: Duration,
    /// Bytes per second in each direction; None for unlimited.
    pub bandwidth: Option<u64>,
}

impl Link {
    pub fn rtt(rtt: Duration) -> Link {
        Link {
            one_way: rtt / 2,
            jitter: Duration::ZERO,
            bandwidth: None,
        }
    }
}

/// What a link is doing now, beyond its fixed latency: a partition holds every byte, and
/// an extra delay slows it (a congested or degraded path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    pub held: bool,
    pub extra: Duration,
}

/// Relays `client` to `upstream` over `link` until either side closes, under the link's
/// current `conditions` (they may change while the connection lives).
pub async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    link: Link,
    conditions: watch::Receiver<Conditions>,
    counted: impl Fn(u64) + Send + Sync + Clone + 'static,
) -> std::io::Result<()> {
    let accepted = Instant::now();
    let server = TcpStream::connect(upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // The client could send only after the handshake's round trip.
    let handshake = accepted + link.one_way * 2;
    let up = pipe(cr, sw, link, handshake, conditions.clone(), counted.clone());
    let down = pipe(sr, cw, link, accepted, conditions, counted);
    let _ = tokio::join!(up, down);
    Ok(())
}

/// One direction: a reader stamps each chunk with when it may arrive, a writer waits for
/// that moment. Chunks never overtake each other.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    not_before: Instant,
    mut conditions: watch::Receiver<Conditions>,
    counted: impl Fn(u64) + Send + Sync + 'static,
) {
    let reader_conditions = conditions.clone();
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Bytes>)>(1024);
    let reader = tokio::spawn(async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            let now = Instant::now().max(not_before);
            let jitter = if link.jitter.is_zero() {
                Duration::ZERO
            } else {
                link.jitter.mul_f64(rand::random::<f64>())
            };
            let extra = reader_conditions.borrow().extra;
            let mut due = (now + link.one_way + extra + jitter).max(last);
            if let Some(bps) = link.bandwidth {
                // Serialisation delay: the burst occupies the link for len / bandwidth.
                due = due.max(last) + Duration::from_secs_f64(n as f64 / bps as f64);
            }
            last = due;
            let chunk = (n > 0).then(|| Bytes::copy_from_slice(&buf[..n]));
            let end = chunk.is_none();
            if tx.send((due, chunk)).await.is_err() || end {
                return;
            }
        }
    });
    while let Some((due, chunk)) = rx.recv().await {
        // Not tokio's millisecond timer: its rounding would add up to a millisecond a hop.
        crate::timer::sleep_until(due.into_std()).await;
        while conditions.borrow().held {
            if conditions.changed().await.is_err() {
                break;
            }
        }
        match chunk {
            Some(bytes) => {
                counted(bytes.len() as u64);
                if to.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            None => {
                let _ = to.shutdown().await;
                break;
            }
        }
    }
    reader.abort();
}
