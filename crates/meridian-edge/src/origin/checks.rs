//! Health checks of every origin member: they mark members up and down on the PoP's
//! health board and measure the round trip that ranks them.

use super::Origins;
use std::sync::Arc;

impl Origins {
    /// Starts health checks of every member; each check's round trip feeds the member's
    /// latency estimate.
    pub fn start_checks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (gi, g) in self.groups.iter().enumerate() {
            for (mi, _) in g.members.iter().enumerate() {
                let me = self.clone();
                tasks.push(tokio::spawn(async move {
                    let g = &me.groups[gi];
                    let m = &g.members[mi];
                    let labels = vec![("origin", m.name.clone()), ("group", g.cfg.name.clone())];
                    let mut tick = tokio::time::interval(g.cfg.health_check.interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let out = meridian_health::probe_from(
                            me.local_ip,
                            m.check_addr,
                            &g.cfg.health_check,
                        )
                        .await;
                        if out.healthy {
                            // A probe opens a new connection: handshake and request are two
                            // round trips.
                            let new = m.observe_rtt(out.latency.as_micros() as u64 / 2);
                            me.m.rtt.get_or_create(&labels).set(new as f64 / 1e6);
                        }
                        me.board.observe(&m.key, out);
                        me.m.healthy
                            .get_or_create(&labels)
                            .set(i64::from(m.health.is_healthy()));
                    }
                }));
            }
        }
        tasks
    }
}
