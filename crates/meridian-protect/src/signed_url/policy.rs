//! CloudFront policy statements: the canned form rebuilt byte for byte, and custom policies
//! read from their JSON.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::error::SignedError;

/// The canned policy for `resource` and `expires`, exactly as CloudFront and the AWS SDKs
/// write it (no whitespace), since the signature covers these bytes.
pub(crate) fn canned(resource: &str, expires: u64) -> String {
    // serde_json's string escaping is a no-op for any ordinary URL, and keeps a quote or
    // backslash in one from producing JSON that means something else.
    let resource = Value::String(resource.to_string()).to_string();
    format!(
        "{{\"Statement\":[{{\"Resource\":{resource},\"Condition\":{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}}}}}]}}"
    )
}

/// A custom policy's conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomPolicy {
    /// The URL pattern the policy covers (`*` any run of characters, `?` one); None covers
    /// every URL of the distribution.
    pub resource: Option<String>,
    /// Epoch seconds; the policy is valid strictly before this.
    pub date_less_than: u64,
    /// Epoch seconds; the policy is valid strictly after this.
    pub date_greater_than: Option<u64>,
    /// An IPv4 or IPv6 CIDR range, e.g. `192.0.2.0/24`.
    pub source_ip: Option<String>,
}

impl CustomPolicy {
    /// The policy as compact JSON, the bytes a signer signs.
    pub fn to_json(&self) -> String {
        let mut cond = Map::new();
        cond.insert("DateLessThan".into(), epoch(self.date_less_than));
        if let Some(t) = self.date_greater_than {
            cond.insert("DateGreaterThan".into(), epoch(t));
        }
        if let Some(ip) = &self.source_ip {
            let mut m = Map::new();
            m.insert("AWS:SourceIp".into(), Value::String(ip.clone()));
            cond.insert("IpAddress".into(), Value::Object(m));
        }
        let mut stmt = Map::new();
        if let Some(r) = &self.resource {
            stmt.insert("Resource".into(), Value::String(r.clone()));
        }
        stmt.insert("Condition".into(), Value::Object(cond));
        let mut top = Map::new();
        top.insert("Statement".into(), Value::Array(vec![Value::Object(stmt)]));
        Value::Object(top).to_string()
    }

    /// Reads a policy statement. Exactly one statement, and only the conditions CloudFront
    /// knows: an unknown condition is refused rather than ignored, since ignoring it would
    /// grant more than the signer meant.
    pub fn parse(json: &[u8]) -> Result<CustomPolicy, SignedError> {
        let bad = SignedError::Malformed;
        let top: Value = serde_json::from_slice(json).map_err(|_| bad("policy is not JSON"))?;
        let stmts = top
            .get("Statement")
            .and_then(Value::as_array)
            .ok_or(bad("policy has no Statement array"))?;
        let [stmt] = stmts.as_slice() else {
            return Err(bad("policy must have exactly one statement"));
        };
        let stmt = stmt.as_object().ok_or(bad("statement is not an object"))?;
        let resource = match stmt.get("Resource") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("Resource is not a string")),
        };
        let cond = stmt
            .get("Condition")
            .and_then(Value::as_object)
            .ok_or(bad("statement has no Condition object"))?;
        let mut policy = CustomPolicy {
            resource,
            date_less_than: 0,
            date_greater_than: None,
            source_ip: None,
        };
        let mut have_less = false;
        for (name, value) in cond {
            match name.as_str() {
                "DateLessThan" => {
                    policy.date_less_than = read_epoch(value)?;
                    have_less = true;
                }
                "DateGreaterThan" => policy.date_greater_than = Some(read_epoch(value)?),
                "IpAddress" => {
                    let ip = value
                        .get("AWS:SourceIp")
                        .and_then(Value::as_str)
                        .ok_or(bad("IpAddress without an AWS:SourceIp string"))?;
                    Cidr::parse(ip).ok_or(bad("AWS:SourceIp is not a CIDR range"))?;
                    policy.source_ip = Some(ip.to_string());
                }
                _ => return Err(bad("policy has a condition CloudFront does not know")),
            }
        }
        if !have_less {
            return Err(bad("policy has no DateLessThan"));
        }
        Ok(policy)
    }

    /// Checks the policy's conditions against a request.
    pub(crate) fn check(&self, url: &str, ip: IpAddr, now: SystemTime) -> Result<(), SignedError> {
        let secs = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if secs >= self.date_less_than {
            return Err(SignedError::Expired);
        }
        if self.date_greater_than.is_some_and(|t| secs <= t) {
            return Err(SignedError::NotYetValid);
        }
        if let Some(range) = &self.source_ip {
            let cidr = Cidr::parse(range)
                .ok_or(SignedError::Malformed("AWS:SourceIp is not a CIDR range"))?;
            if !cidr.contains(ip) {
                return Err(SignedError::Ip);
            }
        }
        if let Some(pattern) = &self.resource {
            if !wildcard_match(pattern.as_bytes(), url.as_bytes()) {
                return Err(SignedError::Resource);
            }
        }
        Ok(())
    }
}

fn epoch(t: u64) -> Value {
    let mut m = Map::new();
    m.insert("AWS:EpochTime".into(), Value::from(t));
    Value::Object(m)
}

fn read_epoch(v: &Value) -> Result<u64, SignedError> {
    v.get("AWS:EpochTime")
        .and_then(Value::as_u64)
        .ok_or(SignedError::Malformed(
            "a date condition without an integer AWS:EpochTime",
        ))
}

/// `*` matches any run of bytes (including none), `?` exactly one. Greedy with a single
/// backtrack point, so the cost stays O(pattern × text) at worst, both of them bounded.
pub(crate) fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// An IPv4 or IPv6 address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`; a bare address is the one-address range.
    pub(crate) fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        // A viewer on a dual-stack socket shows up as ::ffff:a.b.c.d.
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_policy_is_the_documented_bytes() {
        assert_eq!(
            canned(
                "https://d111111abcdef8.cloudfront.net/image.jpg?color=red",
                1767290400
            ),
            "{\"Statement\":[{\"Resource\":\"https://d111111abcdef8.cloudfront.net/image.jpg?color=red\",\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":1767290400}}}]}"
        );
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, t: &str| wildcard_match(p.as_bytes(), t.as_bytes());
        assert!(m("https://d.net/*", "https://d.net/a/b.jpg?x=1"));
        assert!(m("http*://d.net/a.jpg", "https://d.net/a.jpg"));
        assert!(m("https://d.net/a?.jpg", "https://d.net/ab.jpg"));
        assert!(!m("https://d.net/a?.jpg", "https://d.net/a.jpg"));
        assert!(m("*", ""));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b", "xxaxxbxxc"));
        assert!(!m("https://d.net/videos/*", "https://d.net/images/x"));
        assert!(m("https://d.net/a.jpg", "https://d.net/a.jpg"));
        assert!(!m("https://d.net/a.jpg", "https://d.net/a.jpgx"));
    }

    #[test]
    fn cidr_ranges() {
        let c = Cidr::parse("192.0.2.0/24").expect("v4");
        assert!(c.contains("192.0.2.200".parse().expect("ip")));
        assert!(c.contains("::ffff:192.0.2.1".parse().expect("ip")));
        assert!(!c.contains("192.0.3.1".parse().expect("ip")));
        let c = Cidr::parse("2001:db8::/32").expect("v6");
        assert!(c.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!c.contains("2001:db9::5".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains("8.8.8.8".parse().expect("ip")));
        assert!(Cidr::parse("192.0.2.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn custom_policy_round_trips_and_refuses_unknown_conditions() {
        let p = CustomPolicy {
            resource: Some("https://d.net/*".into()),
            date_less_than: 200,
            date_greater_than: Some(100),
            source_ip: Some("10.0.0.0/8".into()),
        };
        assert_eq!(CustomPolicy::parse(p.to_json().as_bytes()), Ok(p));
        let odd =
            br#"{"Statement":[{"Condition":{"DateLessThan":{"AWS:EpochTime":5},"Referer":{}}}]}"#;
        assert_eq!(CustomPolicy::parse(odd).unwrap_err().reason(), "malformed");
        let no_end = br#"{"Statement":[{"Condition":{"DateGreaterThan":{"AWS:EpochTime":5}}}]}"#;
        assert_eq!(
            CustomPolicy::parse(no_end).unwrap_err().reason(),
            "malformed"
        );
    }
}
