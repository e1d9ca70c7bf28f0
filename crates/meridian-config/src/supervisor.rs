//! `[supervisor]`: how `up` and the host agent restart, wait for and stop nodes.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Supervisor {
    #[serde(with = "crate::serde_duration")]
    pub restart_backoff: Duration,
    #[serde(with = "crate::serde_duration")]
    pub restart_backoff_max: Duration,
    #[serde(with = "crate::serde_duration")]
    pub ready_timeout: Duration,
    #[serde(with = "crate::serde_duration")]
    pub stop_timeout: Duration,
}

pub(crate) fn default_supervisor() -> Supervisor {
    Supervisor {
        restart_backoff: Duration::from_millis(200),
        restart_backoff_max: Duration::from_secs(10),
        ready_timeout: Duration::from_secs(30),
        stop_timeout: Duration::from_secs(5),
    }
}

pub(crate) fn read_supervisor(t: &Table, d: &mut Diagnostics) -> Option<Supervisor> {
    let mut s = default_supervisor();
    s.restart_backoff = t
        .duration(d, "restart_backoff")
        .unwrap_or(s.restart_backoff);
    s.restart_backoff_max = t
        .duration(d, "restart_backoff_max")
        .unwrap_or(s.restart_backoff_max);
    s.ready_timeout = t.duration(d, "ready_timeout").unwrap_or(s.ready_timeout);
    s.stop_timeout = t.duration(d, "stop_timeout").unwrap_or(s.stop_timeout);
    t.finish(d);
    Some(s)
}
