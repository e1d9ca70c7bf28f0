//! Multivalue: up to eight healthy answers in random order.

use super::decision::{Chosen, Decision, Query};
use rand::Rng;
use std::ops::ControlFlow::{self, Continue};

pub(super) fn decide(q: &Query) -> ControlFlow<Decision, Chosen> {
    let Query { live, .. } = *q;
    let mut pick = live.to_vec();
    // Random order and at most eight, as Route 53 returns them.
    shuffle(&mut pick);
    pick.truncate(8);
    Continue((
        pick,
        format!(
            "multivalue: up to 8 of {} healthy answers, in random order",
            live.len()
        ),
    ))
}

fn shuffle(v: &mut [usize]) {
    let mut rng = rand::rng();
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}
