//! Weighted: one answer chosen at random in proportion to weight; weight-0 answers only
//! when no weighted answer is healthy. The decision keeps every alternative so the answer
//! cache can choose per query.

use super::decision::{finish, rdata_of, Chosen, Decision, Query};
use hickory_proto::rr::RData;
use rand::Rng;
use std::ops::ControlFlow::{self, Break};

pub(super) fn decide(q: &Query, metrics: &mut [Option<f64>]) -> ControlFlow<Decision, Chosen> {
    let Query {
        explain,
        set,
        client,
        health,
        live,
        rule_prefix,
        ..
    } = *q;
    for &i in live {
        metrics[i] = Some(f64::from(set.answers[i].weight));
    }
    let weighted: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&i| set.answers[i].weight > 0)
        .collect();
    let pool = if weighted.is_empty() {
        live.to_vec()
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
        health,
        Some(&*metrics),
        rdata_of(set, pick.into_iter()),
        String::new(),
    );
    d.alternatives = alternatives;
    d.rule = format!(
        "{rule_prefix}weighted: chosen at random in proportion to weight among {} healthy answers",
        pool.len()
    );
    Break(d.with_ids(set, pick.into_iter().collect()))
}
