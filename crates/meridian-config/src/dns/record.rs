//! A record set: every answer of one name and type, and the routing policy among them.

use super::answer::{parse_alias, plain_answer, read_answer, Answer, FailoverRole};
use super::policy::Policy;
use super::value::{read_values, RecordKind};
use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Duration;

/// All records of one name and type, and how to choose among them.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSet {
    /// Relative to the zone; `@` is the apex.
    pub name: String,
    pub kind: RecordKind,
    #[serde(with = "crate::serde_duration")]
    pub ttl: Duration,
    pub policy: Policy,
    pub answers: Vec<Answer>,
    /// Derived from the topology (the database endpoints), not written in `[dns]`.
    pub generated: bool,
}

pub(super) fn read_record_set(
    t: &Table,
    d: &mut Diagnostics,
    default_ttl: Duration,
) -> Option<RecordSet> {
    let name = t.req_str(
        d,
        "name",
        "add the name relative to the zone, such as name = \"api\" (\"@\" is the apex)",
    );
    let kind = match t.str(d, "type") {
        Some(k) => match RecordKind::parse(&k.to_ascii_uppercase()) {
            Some(k) => Some(k),
            None => {
                let f = t.get("type")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{k}` is not a record type Meridian serves"),
                    format!("use one of: {}", RecordKind::NAMES.join(", ")),
                );
                None
            }
        },
        None => {
            if !t.has("type") {
                t.missing(
                    d,
                    "type",
                    "add type = \"A\" (or AAAA, CNAME, TXT, MX, NS, CAA)",
                );
            }
            None
        }
    };
    let ttl = t.duration(d, "ttl").unwrap_or(default_ttl);
    let policy = match t.str(d, "policy") {
        None => Policy::Simple,
        Some(p) => match Policy::parse(&p) {
            Some(p) => p,
            None => {
                let f = t.get("policy")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("`{p}` is not a routing policy"),
                    format!("use one of: {}", Policy::NAMES.join(", ")),
                );
                Policy::Simple
            }
        },
    };
    let mut answers = Vec::new();
    // A simple record may give its values inline.
    if let Some(values) = read_values(t, d, kind) {
        answers.push(plain_answer("default", values));
    }
    if let Some(alias) = t.str(d, "alias") {
        let f = t.get("alias")?;
        let mut a = plain_answer("default", Vec::new());
        a.alias = parse_alias(d, &alias, &f.key, f.span.clone());
        a.alias_at = Some((f.span, f.key));
        a.evaluate_target_health = t.bool(d, "evaluate_target_health").unwrap_or(true);
        answers.push(a);
    }
    let mut ids = HashSet::new();
    for a in t.tables(d, "answer") {
        if let Some(ans) = read_answer(&a, d, policy, kind) {
            if !ids.insert(ans.id.clone()) {
                let f = a.get("id")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("two answers share the id `{}`", ans.id),
                    "give each answer of a record set its own id",
                );
            }
            answers.push(ans);
        }
    }
    if answers.is_empty() {
        d.error(
            t.span.clone(),
            &t.path,
            "the record set has no answer",
            "add values = [...], alias = \"lb:<region>\", or [[dns.record.answer]] entries",
        );
    }
    if policy == Policy::Failover {
        let primaries = answers
            .iter()
            .filter(|a| a.failover == Some(FailoverRole::Primary))
            .count();
        if primaries != 1 {
            d.error(
                t.span.clone(),
                &t.path,
                format!(
                    "a failover record set needs exactly one primary answer, it has {primaries}"
                ),
                "mark one answer failover = \"primary\" and the other \"secondary\"",
            );
        }
    }
    t.finish(d);
    let name = name?;
    Some(RecordSet {
        name,
        kind: kind?,
        ttl,
        policy,
        answers,
        generated: false,
    })
}
