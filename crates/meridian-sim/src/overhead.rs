//! `meridian bench relay`: how much a WAN relay adds beyond the latency it models, under
//! load. Many connections ping-pong small messages straight to an echo server, then
//! through a relay that models `rtt`; the difference, less `rtt`, is the relay's own cost.

use crate::relay::{relay, Conditions, Link};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub connections: usize,
    pub seconds: f64,
    pub modelled_rtt_ms: f64,
    pub direct_p50_ms: f64,
    pub direct_p99_ms: f64,
    pub relayed_p50_ms: f64,
    pub relayed_p99_ms: f64,
    /// relayed - modelled - direct, at p50 and p99.
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    pub exchanges: u64,
}

async fn echo(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// `connections` clients ping-pong 64 bytes with `to` for `duration`.
async fn ping_pong(to: SocketAddr, connections: usize, duration: Duration) -> Result<Histogram<u64>, String> {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
            let mut s = TcpStream::connect(to).await.map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let end = Instant::now() + duration;
            let msg = [7u8; 64];
            let mut buf = [0u8; 64];
            while Instant::now() < end {
                let t = Instant::now();
                s.write_all(&msg).await.map_err(|e| e.to_string())?;
                s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                let _ = h.record((t.elapsed().as_micros() as u64).max(1));
            }
            Ok::<_, String>(h)
        }));
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
    for t in tasks {
        let h = t.await.map_err(|e| e.to_string())??;
        all.add(h).map_err(|e| e.to_string())?;
    }
    Ok(all)
}

/// Measures direct and relayed exchanges on loopback addresses 127.79.0.1 and .2.
pub async fn measure(connections: usize, duration: Duration, rtt: Duration) -> Result<OverheadReport, String> {
    let server: SocketAddr = ([127, 79, 0, 2], 7100).into();
    let front: SocketAddr = ([127, 79, 0, 1], 7100).into();
    let l = TcpListener::bind(server).await.map_err(|e| format!("{server}: {e}"))?;
    tokio::spawn(echo(l));
    let rl = TcpListener::bind(front).await.map_err(|e| format!("{front}: {e}"))?;
    let (_keep, conditions) = watch::channel(Conditions::default());
    tokio::spawn(async move {
        while let Ok((s, _)) = rl.accept().await {
            tokio::spawn(relay(s, server, Link::rtt(rtt), conditions.clone(), |_| {}));
        }
    });
    let direct = ping_pong(server, connections, duration).await?;
    let relayed = ping_pong(front, connections, duration).await?;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1e3;
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    let model = rtt.as_secs_f64() * 1e3;
    Ok(OverheadReport {
        connections,
        seconds: duration.as_secs_f64(),
        modelled_rtt_ms: model,
        direct_p50_ms: r(ms(&direct, 0.5)),
        direct_p99_ms: r(ms(&direct, 0.99)),
        relayed_p50_ms: r(ms(&relayed, 0.5)),
        relayed_p99_ms: r(ms(&relayed, 0.99)),
        added_p50_ms: r(ms(&relayed, 0.5) - model - ms(&direct, 0.5)),
        added_p99_ms: r(ms(&relayed, 0.99) - model - ms(&direct, 0.99)),
        exchanges: relayed.len(),
    })
}

impl std::fmt::Display for OverheadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "# Relay overhead: {} connections for {} s each way, modelled round trip {} ms\n",
            self.connections, self.seconds, self.modelled_rtt_ms
        )?;
        writeln!(f, "| path | p50 ms | p99 ms |\n|---|---:|---:|")?;
        writeln!(f, "| direct | {:.3} | {:.3} |", self.direct_p50_ms, self.direct_p99_ms)?;
        writeln!(f, "| through the relay | {:.3} | {:.3} |", self.relayed_p50_ms, self.relayed_p99_ms)?;
        writeln!(
            f,
            "| added beyond the model | {:.3} | {:.3} |\n\n{} relayed exchanges.",
            self.added_p50_ms, self.added_p99_ms, self.exchanges
        )
    }
}
