//! Routing policies: which answers a record set gives this client now.
//!
//! Semantics follow Route 53: health only matters where Route 53 evaluates it, weight-0
//! answers are used only when no weighted answer with weight is healthy, geolocation
//! falls back from country to continent to default, multivalue gives up to eight healthy
//! answers, and when every candidate is unhealthy the set fails open (configurable).

use crate::client::ClientInfo;
use crate::zone::{RtAnswer, RtSet, Zone};
use hickory_proto::rr::RData;
use meridian_config::{FailoverRole, GeoMatch, Policy};
use rand::Rng;
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

pub fn decide(
    explain: bool,
    zone: &Zone,
    set: &RtSet,
    client: &ClientInfo,
    healthy: &dyn Fn(&str) -> bool,
    measured_rtt: &dyn Fn(&str, &str) -> Option<f64>,
) -> Decision {
    let health_of = |a: &RtAnswer| a.health.as_deref().map(healthy).unwrap_or(true);
    let health: Vec<bool> = set.answers.iter().map(health_of).collect();
    let mut alive = health.clone();
    let mut rule_prefix = String::new();
    // Simple records are not health checked by Route 53; every other policy is.
    if set.policy != Policy::Simple && !alive.iter().any(|h| *h) && !set.answers.is_empty() {
        if zone.fail_closed {
            return finish(
                explain,
                set,
                client,
                &health,
                None,
                Vec::new(),
                "every candidate is unhealthy; failing closed (no answer)".into(),
            );
        }
        if !zone.when_all_unhealthy.is_empty() {
            let rdata: Vec<RData> = zone
                .when_all_unhealthy
                .iter()
                .filter(|r| r.record_type() == set.rtype)
                .cloned()
                .collect();
            return finish(
                explain,
                set,
                client,
                &health,
                None,
                rdata,
                "every candidate is unhealthy; answering with the static fallback".into(),
            );
        }
        alive = vec![true; set.answers.len()];
        rule_prefix =
            "every candidate is unhealthy, so all are treated as healthy (fail open); ".into();
    }
    let live: Vec<usize> = (0..set.answers.len()).filter(|&i| alive[i]).collect();
    let mut metrics: Vec<Option<f64>> = vec![None; set.answers.len()];
    let (chosen, rule): (Vec<usize>, String) = match set.policy {
        Policy::Simple => (
            (0..set.answers.len()).collect(),
            "simple: every value".into(),
        ),
        Policy::Multivalue => {
            let mut pick = live.clone();
            // Random order and at most eight, as Route 53 returns them.
            shuffle(&mut pick);
            pick.truncate(8);
            (
                pick,
                format!(
                    "multivalue: up to 8 of {} healthy answers, in random order",
                    live.len()
                ),
            )
        }
        Policy::Weighted => {
            for &i in &live {
                metrics[i] = Some(f64::from(set.answers[i].weight));
            }
            let weighted: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| set.answers[i].weight > 0)
                .collect();
            let pool = if weighted.is_empty() {
                live.clone()
            } else {
                weighted
            };
            let total: u32 = pool.iter().map(|&i| set.answers[i].weight).sum();
            let pick = if total == 0 {
                pool.get(rand::rng().random_range(0..pool.len().max(1)))
                    .copied()
            } else {
                let mut x = rand::rng().random_range(0..total);
                pool.iter().copied().find(|&i| {
                    let w = set.answers[i].weight;
                    if x < w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
            };
            let alternatives: Vec<(u32, Vec<RData>)> = pool
                .iter()
                .map(|&i| {
                    (
                        if total == 0 { 1 } else { set.answers[i].weight },
                        set.answers[i].rdata.clone(),
                    )
                })
                .collect();
            let mut d = finish(
                explain,
                set,
                client,
                &health,
                Some(&metrics),
                rdata_of(set, pick.into_iter()),
                String::new(),
            );
            d.alternatives = alternatives;
            d.rule = format!("{rule_prefix}weighted: chosen at random in proportion to weight among {} healthy answers", pool.len());
            return d.with_ids(set, pick.into_iter().collect());
        }
        Policy::Failover => {
            let role = |r| {
                live.iter()
                    .copied()
                    .find(|&i| set.answers[i].failover == Some(r))
            };
            match (role(FailoverRole::Primary), role(FailoverRole::Secondary)) {
                (Some(p), _) => (vec![p], "failover: the primary is healthy".into()),
                (None, Some(s)) => (
                    vec![s],
                    "failover: the primary is unhealthy, so the secondary answers".into(),
                ),
                (None, None) => (Vec::new(), "failover: no healthy answer".into()),
            }
        }
        Policy::Latency => {
            let Some((loc, here)) = client
                .location
                .as_ref()
                .and_then(|l| Some((l, l.location?)))
            else {
                let pick = live
                    .iter()
                    .copied()
                    .find(|&i| {
                        set.answers[i].region.as_deref() == Some(zone.primary_region.as_str())
                    })
                    .or_else(|| live.first().copied());
                return finish(explain, set, client, &health, None, rdata_of(set, pick.into_iter()), format!("{rule_prefix}latency: the client's location is unknown, so the primary region answers"))
                    .with_ids(set, pick.into_iter().collect());
            };
            for &i in &live {
                let a = &set.answers[i];
                // Measured beats configured beats modelled.
                let given = a.region.as_deref().and_then(|r| {
                    measured_rtt(&loc.name, r).or_else(|| {
                        zone.latency_overrides
                            .get(&(loc.name.clone(), r.to_owned()))
                            .copied()
                    })
                });
                metrics[i] = given.or_else(|| a.location.map(|l| here.rtt_ms(&l)));
            }
            let best = min_by(&live, &metrics);
            (
                best.into_iter().collect(),
                format!("latency: lowest round trip from {}", loc.name),
            )
        }
        Policy::Geoproximity => {
            let Some((loc, here)) = client
                .location
                .as_ref()
                .and_then(|l| Some((l, l.location?)))
            else {
                return finish(explain, set, client, &health, None, rdata_of(set, live.first().copied().into_iter()), format!("{rule_prefix}geoproximity: the client's location is unknown, so the first healthy answer"))
                    .with_ids(set, live.first().copied().into_iter().collect());
            };
            for &i in &live {
                let a = &set.answers[i];
                // Route 53's bias: a positive bias shrinks the distance, drawing clients in.
                metrics[i] = a
                    .location
                    .map(|l| here.distance_km(&l) * (1.0 - f64::from(a.bias) / 100.0));
            }
            let best = min_by(&live, &metrics);
            (
                best.into_iter().collect(),
                format!("geoproximity: nearest (biased) to {}", loc.name),
            )
        }
        Policy::Geolocation => {
            let country = client.location.as_ref().and_then(|l| l.country.clone());
            let continent = client.location.as_ref().and_then(|l| l.continent.clone());
            let find = |m: &GeoMatch| {
                live.iter()
                    .copied()
                    .find(|&i| set.answers[i].geo.as_ref() == Some(m))
            };
            let by_country = country.clone().and_then(|c| find(&GeoMatch::Country(c)));
            let by_continent = continent
                .clone()
                .and_then(|c| find(&GeoMatch::Continent(c)));
            match (by_country, by_continent, find(&GeoMatch::Default)) {
                (Some(i), _, _) => (
                    vec![i],
                    format!("geolocation: country {}", country.unwrap_or_default()),
                ),
                (None, Some(i), _) => (
                    vec![i],
                    format!("geolocation: continent {}", continent.unwrap_or_default()),
                ),
                (None, None, Some(i)) => (vec![i], "geolocation: the default location".into()),
                _ => (
                    Vec::new(),
                    "geolocation: no record for this location and no default".into(),
                ),
            }
        }
        Policy::IpBased => {
            let mut best: Option<(usize, u8)> = None;
            for &i in &live {
                for c in &set.answers[i].cidrs {
                    if c.contains(client.ip) && best.is_none_or(|(_, p)| c.prefix > p) {
                        best = Some((i, c.prefix));
                    }
                }
            }
            match best {
                Some((i, p)) => {
                    let mut d = finish(
                        explain,
                        set,
                        client,
                        &health,
                        None,
                        rdata_of(set, std::iter::once(i)),
                        format!("{rule_prefix}ip_based: longest matching network /{p}"),
                    );
                    d.scope_prefix = p.min(client.source_prefix);
                    return d.with_ids(set, vec![i]);
                }
                None => {
                    let d = live.iter().copied().find(|&i| set.answers[i].ip_default);
                    (
                        d.into_iter().collect(),
                        "ip_based: no network matched; the default (*) answer".into(),
                    )
                }
            }
        }
    };
    let mut d = finish(
        explain,
        set,
        client,
        &health,
        Some(&metrics),
        rdata_of(set, chosen.iter().copied()),
        format!("{rule_prefix}{rule}"),
    );
    if explain {
        d.chosen = chosen.iter().map(|&i| set.answers[i].id.clone()).collect();
    }
    d
}

fn min_by(live: &[usize], metrics: &[Option<f64>]) -> Option<usize> {
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

fn shuffle(v: &mut [usize]) {
    let mut rng = rand::rng();
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}

fn rdata_of(set: &RtSet, idx: impl Iterator<Item = usize>) -> Vec<RData> {
    idx.flat_map(|i| set.answers[i].rdata.iter().cloned())
        .collect()
}

fn finish(
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
    fn with_ids(mut self, set: &RtSet, idx: Vec<usize>) -> Self {
        if self.candidates.is_empty() {
            return self;
        }
        self.chosen = idx.iter().map(|&i| set.answers[i].id.clone()).collect();
        self
    }
}
