//! Failover: the primary while it is healthy, else the secondary.

use super::decision::{Chosen, Decision, Query};
use meridian_config::FailoverRole;
use std::ops::ControlFlow::{self, Continue};

pub(super) fn decide(q: &Query) -> ControlFlow<Decision, Chosen> {
    let Query { set, live, .. } = *q;
    let role = |r| {
        live.iter()
            .copied()
            .find(|&i| set.answers[i].failover == Some(r))
    };
    Continue(
        match (role(FailoverRole::Primary), role(FailoverRole::Secondary)) {
            (Some(p), _) => (vec![p], "failover: the primary is healthy".into()),
            (None, Some(s)) => (
                vec![s],
                "failover: the primary is unhealthy, so the secondary answers".into(),
            ),
            (None, None) => (Vec::new(), "failover: no healthy answer".into()),
        },
    )
}
