//! Readers shared by several sections: named entries, identifiers, DNS names, latency tables.

use crate::error::Diagnostics;
use crate::read::Table;
use std::collections::HashSet;
use std::time::Duration;

/// Continent codes as geolocation routing and client locations write them.
pub(crate) const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

/// Whether `s` is a DNS name of letters, digits and inner hyphens in dot-separated labels
/// (no trailing dot): zones, and the host names a distribution answers for.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Node names become process names, file names and metric labels: keep them plain.
pub(crate) fn check_identifier(
    d: &mut Diagnostics,
    value: &str,
    key: &str,
    span: std::ops::Range<usize>,
) {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-');
    if !ok {
        d.error(
            span,
            key,
            format!("`{value}` is not a valid name"),
            "use lowercase letters, digits and hyphens (at most 63), such as \"us-east-1\"",
        );
    }
}

/// Reads `[[key]]` entries that each have a unique `name`, handing the rest to `each`.
pub(crate) fn read_named<T>(
    t: &Table,
    d: &mut Diagnostics,
    key: &'static str,
    mut each: impl FnMut(&Table, &mut Diagnostics, String) -> Option<T>,
) -> Option<Vec<T>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut ok = true;
    for s in t.tables(d, key) {
        let name = s.req_str(d, "name", "add `name = \"...\"`");
        if let (Some(n), Some(f)) = (&name, s.get("name")) {
            check_identifier(d, n, &f.key, f.span.clone());
            if !seen.insert(n.clone()) {
                d.error(
                    f.span,
                    &f.key,
                    format!("there are two [[{key}]] entries named `{n}`"),
                    "give each one its own name",
                );
            }
        }
        match name.and_then(|n| each(&s, d, n)) {
            Some(v) => out.push(v),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// `[[<table>.latency]]` entries: two named ends (key, fix when missing) and an `rtt`.
pub(crate) fn read_latencies(
    t: &Table,
    d: &mut Diagnostics,
    a: (&'static str, &str),
    b: (&'static str, &str),
) -> Vec<(String, String, Duration)> {
    let mut out = Vec::new();
    for l in t.tables(d, "latency") {
        let x = l.req_str(d, a.0, a.1);
        let y = l.req_str(d, b.0, b.1);
        let rtt = l.duration(d, "rtt");
        if !l.has("rtt") {
            l.missing(d, "rtt", "add the round trip, for example rtt = \"70ms\"");
        }
        l.finish(d);
        if let (Some(x), Some(y), Some(rtt)) = (x, y, rtt) {
            out.push((x, y, rtt));
        }
    }
    out
}
