//! Record types and their values, checked where they are written so a bad address names
//! its own line.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;

/// A DNS record type Meridian serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RecordKind {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
    NS,
    CAA,
}

impl RecordKind {
    pub const NAMES: &'static [&'static str] = &["A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA"];
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "A" => RecordKind::A,
            "AAAA" => RecordKind::AAAA,
            "CNAME" => RecordKind::CNAME,
            "TXT" => RecordKind::TXT,
            "MX" => RecordKind::MX,
            "NS" => RecordKind::NS,
            "CAA" => RecordKind::CAA,
            _ => return None,
        })
    }
}

/// A record set's values, each checked against the record type where it is written.
pub(super) fn read_values(
    t: &Table,
    d: &mut Diagnostics,
    kind: Option<RecordKind>,
) -> Option<Vec<String>> {
    let values = t.str_list(d, "values")?;
    let key = format!("{}.values", t.path);
    for v in &values {
        if let Some(Err((problem, fix))) = kind.map(|k| check_value(k, v.get_ref())) {
            d.error(v.span(), &key, problem, fix);
        }
    }
    Some(values.into_iter().map(|v| v.into_inner()).collect())
}

pub(crate) fn is_domain(s: &str) -> bool {
    s == "@"
        || (!s.is_empty()
            && s.len() <= 253
            && s.trim_end_matches('.').split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }))
}

/// Whether a value can be served as a record of this type.
fn check_value(kind: RecordKind, v: &str) -> Result<(), (String, String)> {
    let bad = |what: &str, fix: &str| Err((format!("`{v}` is not {what}"), fix.to_owned()));
    match kind {
        RecordKind::A if v.parse::<std::net::Ipv4Addr>().is_err() => bad(
            "an IPv4 address",
            "write a dotted quad such as \"192.0.2.1\"",
        ),
        RecordKind::AAAA if v.parse::<std::net::Ipv6Addr>().is_err() => bad(
            "an IPv6 address",
            "write an address such as \"2001:db8::1\"",
        ),
        RecordKind::CNAME | RecordKind::NS if !is_domain(v) => bad(
            "a domain name",
            "write a name such as \"www\" (in the zone) or \"host.example.net.\"",
        ),
        RecordKind::MX => match v.split_whitespace().collect::<Vec<_>>()[..] {
            [pref, host] if pref.parse::<u16>().is_ok() && is_domain(host) => Ok(()),
            _ => bad(
                "`PREFERENCE HOST`",
                "write it as \"10 mail\" or \"20 mx.example.net.\"",
            ),
        },
        RecordKind::CAA => match v.split_whitespace().collect::<Vec<_>>()[..] {
            [flags, "issue" | "issuewild", value]
                if (flags == "0" || flags == "128")
                    && value.starts_with('"')
                    && value.ends_with('"') =>
            {
                Ok(())
            }
            _ => bad(
                "a CAA record Meridian serves",
                "write it as 0 issue \"letsencrypt.org\" (tags issue and issuewild)",
            ),
        },
        RecordKind::TXT if v.len() > 4000 => bad(
            "a TXT value of reasonable length",
            "keep TXT values under 4000 characters",
        ),
        _ => Ok(()),
    }
}
