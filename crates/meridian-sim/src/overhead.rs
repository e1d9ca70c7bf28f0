//! `meridian bench relay`: how much a WAN relay adds beyond the latency it models, under
//! load. Many connections ping-pong small messages straight to an echo server, then
//! through a relay that models `rtt`; the difference, less `rtt`, is the relay's own cost
//! as the clients see it (their own wake-ups after each idle wait included). The relay
//! also reports, per chunk, how late it wrote beyond the model: its cost alone.

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
    /// Chunks the relay wrote on time (not held by a slow receiver).
    pub relay_chunks: u64,
    /// The relay's own lateness per chunk at p50 and p99, as the upper bound of the
    /// histogram bucket that holds it.
    pub relay_late_p50_ms_at_most: f64,
    pub relay_late_p99_ms_at_most: f64,
    /// Share of chunks the relay wrote more than 1 ms late.
    pub relay_late_over_1ms: f64,
}

/// A lateness histogram in the wan node's buckets: cumulative counts per upper bound.
#[derive(Debug, Clone, Default)]
pub struct Lateness {
    /// (upper bound in seconds, chunks at or under it), ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
}

impl Lateness {
    /// Reads `meridian_wan_lateness_seconds` from a node's metrics text.
    pub fn from_metrics(text: &str) -> Lateness {
        let mut l = Lateness::default();
        for s in meridian_telemetry::exposition::parse(text) {
            match s.name.as_str() {
                "meridian_wan_lateness_seconds_count" => l.count = s.value as u64,
                "meridian_wan_lateness_seconds_bucket" => {
                    // The bound is the `le` label; "+Inf" closes the list.
                    let bound = match s.label("le") {
                        Some("+Inf") | None => f64::INFINITY,
                        Some(le) => le.parse().unwrap_or(f64::INFINITY),
                    };
                    l.buckets.push((bound, s.value as u64));
                }
                _ => {}
            }
        }
        l.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        l
    }

    /// The upper bound of the bucket holding quantile `q`, in ms.
    pub fn quantile_at_most_ms(&self, q: f64) -> f64 {
        let want = (q * self.count as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= want.max(1))
            .map(|(b, _)| b * 1e3)
            .unwrap_or(f64::INFINITY)
    }

    /// The share of chunks later than `secs` (a bucket bound).
    pub fn share_over(&self, secs: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let under = self
            .buckets
            .iter()
            .filter(|(b, _)| *b <= secs)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(0);
        (self.count - under.min(self.count)) as f64 / self.count as f64
    }
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

/// `connections` clients ping-pong 64 bytes with `to` for `duration`, from `from`.
async fn ping_pong(
    from: Option<std::net::IpAddr>,
    to: SocketAddr,
    connections: usize,
    duration: Duration,
) -> Result<Histogram<u64>, String> {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("constant bounds are valid");
            let mut s: TcpStream = meridian_http::client::connect_from(from, to)
                .await
                .map_err(|e| e.to_string())?;
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
    let mut all =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid");
    for t in tasks {
        let h = t.await.map_err(|e| e.to_string())??;
        all.add(h).map_err(|e| e.to_string())?;
    }
    Ok(all)
}

/// Where the measured relay runs.
pub enum RelayAt {
    /// In this process, beside the load (the relay competes with it for the same threads).
    InProcess,
    /// In a real `wan` node started from `exe` (`meridian run --node wan`), as in a
    /// deployment; its config goes to `work`.
    Node {
        exe: std::path::PathBuf,
        work: std::path::PathBuf,
    },
}

/// Kills the relay node when the measurement ends, however it ends.
struct Child(Option<std::process::Child>);
impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Measures direct and relayed exchanges on loopback 127.79.0.0/16.
pub async fn measure(
    connections: usize,
    duration: Duration,
    rtt: Duration,
    at: RelayAt,
) -> Result<OverheadReport, String> {
    // Where the relay's lateness histogram can be read after the run.
    let local = meridian_telemetry::Metrics::new();
    let histogram: meridian_telemetry::prometheus_client::metrics::histogram::Histogram = local
        .register(
            "wan_lateness_seconds",
            "relay lateness",
            meridian_telemetry::prometheus_client::metrics::histogram::Histogram::new(
                crate::wan::LATENESS_BUCKETS,
            ),
        );
    let mut node_admin = None;
    let (server, front, source, _node): (SocketAddr, SocketAddr, Option<std::net::IpAddr>, Child) =
        match at {
            RelayAt::InProcess => {
                let server: SocketAddr = ([127, 79, 0, 2], 7100).into();
                let front: SocketAddr = ([127, 79, 0, 1], 7100).into();
                let rl = TcpListener::bind(front)
                    .await
                    .map_err(|e| format!("{front}: {e}"))?;
                let (_keep, conditions) = watch::channel(Conditions::default());
                tokio::spawn(async move {
                    let _keep = _keep;
                    while let Ok((s, _)) = rl.accept().await {
                        let h = histogram.clone();
                        tokio::spawn(relay(
                            s,
                            server,
                            None,
                            Link::rtt(rtt),
                            conditions.clone(),
                            move |_, late| {
                                if let Some(late) = late {
                                    h.observe(late.as_secs_f64());
                                }
                            },
                        ));
                    }
                });
                (server, front, None, Child(None))
            }
            RelayAt::Node { exe, work } => {
                // One region behind the WAN and one client location `rtt` away from it.
                let cfg = format!(
                "[deployment]\nname = \"relay-bench\"\nzone = \"relay.bench\"\n[network]\nsubnet = \"127.79.0.0/16\"\nlb_port = 7100\nadmin_port = 7900\n\
                 [[region]]\nname = \"r1\"\nprimary = true\nlocation = {{ lat = 0, lon = 0 }}\nazs = [\"r1a\"]\n[dns]\nservers = 0\n\
                 [simulation]\nwan = true\n[[simulation.latency]]\nfrom = \"client:bench\"\nto = \"r1\"\nrtt = \"{}ms\"\n\
                 [[client_location]]\nname = \"bench\"\nlocation = {{ lat = 0, lon = 0 }}\n",
                rtt.as_secs_f64() * 1e3
            );
                std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
                let path = work.join("relay-bench.toml");
                std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
                let child = std::process::Command::new(&exe)
                    .args(["run", "--node", "wan", "--config"])
                    .arg(&path)
                    .env("RUST_LOG", "warn")
                    // Its state (the admin token it makes) stays in the work dir.
                    .env("MERIDIAN_STATE_DIR", &work)
                    .stdin(std::process::Stdio::null())
                    .spawn()
                    .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
                let node = Child(Some(child));
                let admin: SocketAddr = ([127, 79, 0, 2], 7900).into();
                let mut up = false;
                for _ in 0..100 {
                    if TcpStream::connect(admin).await.is_ok() {
                        up = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if !up {
                    return Err("the wan node did not start".into());
                }
                node_admin = Some(admin);
                // The balancer's backstage port, where the WAN forwards, and its public one.
                (
                    ([127, 79, 1, 1], 17100).into(),
                    ([127, 79, 1, 1], 7100).into(),
                    Some([127, 79, 200, 1].into()),
                    node,
                )
            }
        };
    let l = TcpListener::bind(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    tokio::spawn(echo(l));
    let direct = ping_pong(source, server, connections, duration).await?;
    let relayed = ping_pong(source, front, connections, duration).await?;
    let late = match node_admin {
        Some(admin) => {
            let text = crate::admin::metrics(admin, Duration::from_secs(2))
                .await
                .ok_or("the wan node's metrics did not answer")?;
            Lateness::from_metrics(&text)
        }
        None => Lateness::from_metrics(&local.encode()),
    };
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
        relay_chunks: late.count,
        relay_late_p50_ms_at_most: late.quantile_at_most_ms(0.5),
        relay_late_p99_ms_at_most: late.quantile_at_most_ms(0.99),
        relay_late_over_1ms: late.share_over(0.001),
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
        writeln!(
            f,
            "| direct | {:.3} | {:.3} |",
            self.direct_p50_ms, self.direct_p99_ms
        )?;
        writeln!(
            f,
            "| through the relay | {:.3} | {:.3} |",
            self.relayed_p50_ms, self.relayed_p99_ms
        )?;
        writeln!(
            f,
            "| added beyond the model | {:.3} | {:.3} |\n\n{} relayed exchanges.",
            self.added_p50_ms, self.added_p99_ms, self.exchanges
        )?;
        writeln!(
            f,
            "\nThe relay's own lateness per chunk (written after its modelled moment), {} chunks: \
             p50 at most {} ms, p99 at most {} ms; {:.3}% later than 1 ms.",
            self.relay_chunks,
            self.relay_late_p50_ms_at_most,
            self.relay_late_p99_ms_at_most,
            self.relay_late_over_1ms * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_quantiles_come_from_bucket_bounds() {
        let text = "# TYPE meridian_wan_lateness_seconds histogram\n\
            meridian_wan_lateness_seconds_sum 0.5\n\
            meridian_wan_lateness_seconds_count 1000\n\
            meridian_wan_lateness_seconds_bucket{le=\"0.00005\"} 600\n\
            meridian_wan_lateness_seconds_bucket{le=\"0.0005\"} 985\n\
            meridian_wan_lateness_seconds_bucket{le=\"0.001\"} 995\n\
            meridian_wan_lateness_seconds_bucket{le=\"+Inf\"} 1000\n";
        let l = Lateness::from_metrics(text);
        assert_eq!(l.count, 1000);
        assert_eq!(l.quantile_at_most_ms(0.5), 0.05);
        assert_eq!(l.quantile_at_most_ms(0.99), 1.0);
        assert!((l.share_over(0.001) - 0.005).abs() < 1e-9);
        assert_eq!(Lateness::default().share_over(0.001), 0.0);
    }
}
