//! The health feed: every answer target checked by the health engine, and each change
//! counted in the node's metrics (which answers are healthy is read from the board).

use crate::server::Dns;
use meridian_config::HealthCheck;

impl Dns {
    /// Starts checking every answer target; keeps health metrics current.
    pub fn start_health_checks(&self, check: &HealthCheck) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks: Vec<_> = self
            .zone()
            .health_targets
            .iter()
            .map(|t| {
                let mut c = check.clone();
                c.path = t.path.clone();
                self.board().watch(&t.key, t.addr, c)
            })
            .collect();
        let me = self.clone();
        let mut events = self.board().subscribe();
        tasks.push(tokio::spawn(async move {
            while let Ok(ev) = events.recv().await {
                me.record_health(&ev.target, &ev.to);
            }
        }));
        tasks
    }
}
