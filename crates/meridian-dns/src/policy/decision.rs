//! What every policy shares: the decision it returns, the query it decides for, and the
//! way a decision is finished (scope, and candidates for explanations).

use crate::client::ClientInfo;
use crate::zone::{RtSet, Zone};
use hickory_proto::rr::RData;
use meridian_config::Policy;
use serde::Serialize;

/// One candidate answer and what the policy saw of it.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub id: String,
    pub healthy: bool,
    /// What the policy ranked by: round trip (ms), biased distance (km), or weight.
    pub metric: Option<f64>,
    pub values: Vec<String>,
}

/// The answer for one query, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub policy: Policy,
    #[serde(skip)]
    pub rdata: Vec<RData>,
    pub chosen: Vec<String>,
    pub candidates: Vec<Candidate>,
    /// The rule that decided, in words.
    pub rule: String,
    /// ECS scope prefix: how widely this answer may be reused by a resolver.
    pub scope_prefix: u8,
    /// For a weighted choice: every answer it could have made, with its weight, so the
    /// answer cache can keep them all and choose per query.
    #[serde(skip)]
    pub alternatives: Vec<(u32, Vec<RData>)>,
}

/// Policies whose answer depends on where the client is.
fn location_dependent(p: Policy) -> bool {
    matches!(
        p,
        Policy::Latency | Policy::Geolocation | Policy::Geoproximity | Policy::IpBased
    )
}

/// One query against one record set, as every policy sees it.
#[derive(Clone, Copy)]
pub(super) struct Query<'a> {
    pub(super) explain: bool,
    pub(super) zone: &'a Zone,
    pub(super) set: &'a RtSet,
    pub(super) client: &'a ClientInfo,
    /// Each answer's own health.
    pub(super) health: &'a [bool],
    /// The answers in play: the healthy ones, or all of them when failing open.
    pub(super) live: &'a [usize],
    /// Says the set is failing open, ahead of a rule that finishes its own decision.
    pub(super) rule_prefix: &'a str,
}

/// A policy's choice (answer indexes) and its rule in words, finished the common way.
pub(super) type Chosen = (Vec<usize>, String);

pub(super) fn min_by(live: &[usize], metrics: &[Option<f64>]) -> Option<usize> {
    live.iter()
        .copied()
        .filter(|&i| metrics[i].is_some())
        .min_by(|&a, &b| {
            metrics[a]
                .partial_cmp(&metrics[b])
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .or_else(|| live.first().copied())
}

pub(super) fn rdata_of(set: &RtSet, idx: impl Iterator<Item = usize>) -> Vec<RData> {
    idx.flat_map(|i| set.answers[i].rdata.iter().cloned())
        .collect()
}

pub(super) fn finish(
    explain: bool,
    set: &RtSet,
    client: &ClientInfo,
    alive: &[bool],
    metrics: Option<&[Option<f64>]>,
    rdata: Vec<RData>,
    rule: String,
) -> Decision {
    let scope_prefix = if location_dependent(set.policy) {
        match &client.location {
            Some(l) => l.network.prefix.min(client.source_prefix),
            None => client.source_prefix,
        }
    } else {
        0
    };
    Decision {
        policy: set.policy,
        rdata,
        chosen: Vec::new(),
        // Candidates are for people (explain); the query path skips building them.
        candidates: set
            .answers
            .iter()
            .enumerate()
            .filter(|_| explain)
            .map(|(i, a)| Candidate {
                id: a.id.clone(),
                healthy: alive[i],
                metric: metrics
                    .and_then(|m| m[i])
                    .map(|x| (x * 10.0).round() / 10.0),
                values: a.rdata.iter().map(|r| r.to_string()).collect(),
            })
            .collect(),
        rule,
        scope_prefix,
        alternatives: Vec::new(),
    }
}

impl Decision {
    /// Records which answers were chosen; only explanations keep them (`candidates` is
    /// empty on the query path).
    pub(super) fn with_ids(mut self, set: &RtSet, idx: Vec<usize>) -> Self {
        if self.candidates.is_empty() {
            return self;
        }
        self.chosen = idx.iter().map(|&i| set.answers[i].id.clone()).collect();
        self
    }
}
