//! The health feed: every answer target checked by the health engine, and each change
//! counted in the node's metrics (which answers are healthy is read from the board).

use crate::server::Dns;
use meridian_config::HealthCheck;

impl Dns {
    /// Starts checking every answer target; keeps health metrics current.
    pub fn start_health_checks(&self, check: &HealthCheck) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = self.watch_targets(&self.zone().health_targets, check);
        let me = self.clone();
        let mut events = self.board().subscribe();
        tasks.push(tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                me.record_health(&ev.target, &ev.to);
            }
        }));
        tasks
    }

    /// Checks `targets` (registered on the board first, so a new one counts from now).
    pub(crate) fn watch_targets(
        &self,
        targets: &[crate::zone::HealthTarget],
        check: &HealthCheck,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        targets
            .iter()
            .map(|t| {
                self.board()
                    .register(&t.key, check.healthy_threshold, check.unhealthy_threshold);
                let mut c = check.clone();
                c.path = t.path.clone();
                self.board().watch(&t.key, t.addr, c)
            })
            .collect()
    }
}
