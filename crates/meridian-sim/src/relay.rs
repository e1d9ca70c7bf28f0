//! A WAN link in userspace: one TCP connection relayed with each direction delayed by the
//! link's one-way latency (plus jitter, a bandwidth limit, and partitions), order kept.
//!
//! A new connection also pays the TCP handshake: the client's first bytes reach the other
//! side one round trip later than they would on an open connection, as after SYN, SYN-ACK.

use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
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

/// One direction, in one task: bytes read are stamped with when they may arrive and
/// queued; the task writes the head of the queue when its moment comes, and keeps reading
/// meanwhile. Chunks never overtake each other. (One task rather than a reader and a
/// writer saves a wake-up per chunk.)
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    not_before: Instant,
    mut conditions: watch::Receiver<Conditions>,
    counted: impl Fn(u64) + Send + Sync + 'static,
) {
    let mut queue: VecDeque<(Instant, Option<Bytes>)> = VecDeque::new();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut reading = true;
    loop {
        let head = queue.front().map(|(due, _)| *due);
        let held = conditions.borrow().held;
        tokio::select! {
            // Bound the queue: past it, the sender waits as on a full link.
            r = from.read(&mut buf), if reading && queue.len() < 1024 => {
                let n = match r {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let now = Instant::now().max(not_before);
                let jitter = if link.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    link.jitter.mul_f64(rand::random::<f64>())
                };
                let extra = conditions.borrow().extra;
                let mut due = (now + link.one_way + extra + jitter).max(last);
                if let Some(bps) = link.bandwidth {
                    // Serialisation delay: the burst occupies the link for len / bandwidth.
                    due += Duration::from_secs_f64(n as f64 / bps as f64);
                }
                last = due;
                reading = n > 0;
                queue.push_back((due, (n > 0).then(|| Bytes::copy_from_slice(&buf[..n]))));
            }
            // Not tokio's millisecond timer: its rounding would add up to a millisecond a hop.
            _ = crate::timer::sleep_until(head.unwrap_or_else(Instant::now).into_std()), if head.is_some() && !held => {
                let Some((_, chunk)) = queue.pop_front() else { continue };
                match chunk {
                    Some(bytes) => {
                        counted(bytes.len() as u64);
                        if to.write_all(&bytes).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = to.shutdown().await;
                        return;
                    }
                }
            }
            changed = conditions.changed(), if held => {
                if changed.is_err() {
                    return;
                }
            }
            else => return,
        }
    }
}
