//! The task that asks the PoPs for their round trips and hands them to latency routing
//! (what the numbers mean and whose they are: `measurements.rs`).

use crate::measurements::{per_region, MeasurementSource};
use crate::server::Dns;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A PoP is forgotten after this many polls without an answer.
const FORGET_AFTER_POLLS: u32 = 3;

impl Dns {
    /// Asks every source for its round trips every `every`, and routes by them.
    pub fn start_measurement_feed(
        &self,
        sources: Vec<MeasurementSource>,
        token: meridian_http::secrets::AdminToken,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let dns = self.clone();
        tokio::spawn(async move {
            let mut last_heard: HashMap<String, Instant> = HashMap::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for s in &sources {
                    match poll(s, &token.current(), every).await {
                        Ok(rtts) => {
                            last_heard.insert(s.pop.clone(), Instant::now());
                            for (region, ms) in &rtts {
                                for c in &s.clients {
                                    // A region no latency record answers with is not an error
                                    // of the PoP's: it is simply not routed by.
                                    let _ = dns.set_measured_latency(c, region, *ms);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::debug!(pop = %s.pop, error = %e, "no round trips from the PoP");
                            let silent = last_heard
                                .get(&s.pop)
                                .is_some_and(|t| t.elapsed() > every * FORGET_AFTER_POLLS);
                            if silent {
                                tracing::info!(pop = %s.pop, "PoP silent; its client locations fall back to configured round trips");
                                last_heard.remove(&s.pop);
                                for c in &s.clients {
                                    dns.forget_measured_latency(c);
                                }
                            }
                        }
                    }
                }
            }
        })
    }
}

async fn poll(
    s: &MeasurementSource,
    token: &str,
    timeout: Duration,
) -> Result<HashMap<String, f64>, String> {
    let got = meridian_http::client::call(
        s.admin,
        http::Method::GET,
        "/origins",
        Some(token),
        timeout.min(Duration::from_secs(2)),
        1 << 20,
    )
    .await?;
    if !(200..300).contains(&got.status) {
        return Err(format!("GET /origins answered {}", got.status));
    }
    per_region(&got.body).map_err(|e| format!("GET /origins gave JSON this DNS cannot read: {e}"))
}
