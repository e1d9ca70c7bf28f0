//! Health checks of every origin member: the board's own probe loop marks members up and
//! down, and one observer of each probe folds its round trip into the member's ranking.

use super::Origins;
use meridian_health::{ProbeObserver, ProbeOutcome, Watch};
use std::sync::Arc;

impl Origins {
    /// Starts health checks of every member; each check's round trip feeds the member's
    /// latency estimate.
    pub fn start_checks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for g in &self.groups {
            for (mi, m) in g.members.iter().enumerate() {
                let me = self.clone();
                let group = g.clone();
                let labels = vec![("origin", m.name.clone()), ("group", g.cfg.name.clone())];
                let on_probe: ProbeObserver = Arc::new(move |out: &ProbeOutcome| {
                    let m = &group.members[mi];
                    if out.healthy {
                        // A probe opens a new connection: handshake and request are two
                        // round trips.
                        let new = m.observe_rtt(out.latency.as_micros() as u64 / 2);
                        me.m.rtt.get_or_create(&labels).set(new as f64 / 1e6);
                    }
                    me.m.healthy
                        .get_or_create(&labels)
                        .set(i64::from(m.health.is_healthy()));
                });
                tasks.push(self.board.watch_with(
                    &m.key,
                    m.check_addr,
                    match m.tier {
                        Some(_) => super::tier::check(&g.cfg.health_check),
                        None => g.cfg.health_check.clone(),
                    },
                    Watch {
                        from: self.local_ip,
                        on_probe: Some(on_probe),
                    },
                ));
            }
        }
        tasks
    }
}
