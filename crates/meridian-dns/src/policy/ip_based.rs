//! IP-based: the answer whose network holds the client most specifically, else the
//! default (`*`) answer.

use super::decision::{finish, rdata_of, Chosen, Decision, Query};
use std::ops::ControlFlow::{self, Break, Continue};

pub(super) fn decide(q: &Query) -> ControlFlow<Decision, Chosen> {
    let Query {
        explain,
        set,
        client,
        health,
        live,
        rule_prefix,
        ..
    } = *q;
    let mut best: Option<(usize, u8)> = None;
    for &i in live {
        for c in &set.answers[i].cidrs {
            if c.contains(client.ip) && best.is_none_or(|(_, p)| c.prefix > p) {
                best = Some((i, c.prefix));
            }
        }
    }
    Continue(match best {
        Some((i, p)) => {
            let mut d = finish(
                explain,
                set,
                client,
                health,
                None,
                rdata_of(set, std::iter::once(i)),
                format!("{rule_prefix}ip_based: longest matching network /{p}"),
            );
            d.scope_prefix = p.min(client.source_prefix);
            return Break(d.with_ids(set, vec![i]));
        }
        None => {
            let d = live.iter().copied().find(|&i| set.answers[i].ip_default);
            (
                d.into_iter().collect(),
                "ip_based: no network matched; the default (*) answer".into(),
            )
        }
    })
}
