//! A PoP's `GET /protection` report (admin token required), read leniently: a PoP on a
//! newer build may add fields, and one on an older build may miss some, so every field is
//! optional and a number that is not one counts as zero.

use serde_json::Value;

/// One PoP's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub pop: String,
    /// Custom rules, then rate-based rules, then geo restriction (as a rule of kind `geo`
    /// named `geo_restriction` when it is on), in the PoP's order.
    pub rules: Vec<RuleReport>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleReport {
    pub name: String,
    /// `rule`, `rate` or `geo`.
    pub kind: String,
    /// What the rule does when it matches: `allow`, `block` or `count`.
    pub action: String,
    pub limit: Option<u64>,
    pub window_seconds: Option<f64>,
    pub allowed: f64,
    pub blocked: f64,
    pub counted: f64,
    pub top_keys: Vec<KeyReport>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyReport {
    /// As the PoP sends it: the parts of a composite key joined by U+001F.
    pub key: String,
    pub count: f64,
    pub refused: f64,
}

/// The name geo restriction's counters carry.
pub const GEO_RULE: &str = "geo_restriction";

fn num(v: &Value, field: &str) -> f64 {
    v.get(field).and_then(Value::as_f64).unwrap_or(0.0)
}

fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn rule(v: &Value, default_kind: &str) -> Option<RuleReport> {
    let name = text(v, "name");
    if name.is_empty() {
        return None;
    }
    let kind = match text(v, "kind") {
        k if k.is_empty() => default_kind.to_owned(),
        k => k,
    };
    let top_keys = v
        .get("top_keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter(|k| k.get("key").is_some())
                .map(|k| KeyReport {
                    key: text(k, "key"),
                    count: num(k, "count"),
                    refused: num(k, "refused"),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(RuleReport {
        name,
        kind,
        action: text(v, "action"),
        limit: v.get("limit").and_then(Value::as_u64),
        window_seconds: v.get("window_seconds").and_then(Value::as_f64),
        allowed: num(v, "allowed"),
        blocked: num(v, "blocked"),
        counted: num(v, "counted"),
        top_keys,
    })
}

/// Reads a `/protection` body; an error only when it is not a JSON object.
pub fn parse(body: &str) -> Result<Report, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    let list = |field: &str, kind: &str| -> Vec<RuleReport> {
        v.get(field)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|r| rule(r, kind)).collect())
            .unwrap_or_default()
    };
    let mut rules = list("rules", "rule");
    rules.extend(list("rate_based_rules", "rate"));
    if let Some(g) = v.get("geo_restriction").filter(|g| g.is_object()) {
        let kind = text(g, "type");
        if !(kind.is_empty() || kind == "none") || num(g, "blocked") > 0.0 {
            rules.push(RuleReport {
                name: GEO_RULE.into(),
                kind: "geo".into(),
                action: "block".into(),
                blocked: num(g, "blocked"),
                ..Default::default()
            });
        }
    }
    Ok(Report {
        pop: text(&v, "pop"),
        rules,
    })
}

/// A key as the page shows it: a composite key's parts joined by " + ".
pub fn display_key(key: &str) -> String {
    key.split('\u{1f}').collect::<Vec<_>>().join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_shape_and_tolerates_more_and_less() {
        let r = parse(
            r#"{"pop":"ashburn","extra":1,
             "rules":[{"name":"no-admin","kind":"rule","action":"block","allowed":0,"blocked":3,"counted":0},{"kind":"rule"}],
             "rate_based_rules":[{"name":"api-per-ip","action":"block","limit":50,"window_seconds":1,"allowed":1200,"blocked":null,
                "top_keys":[{"key":"203.0.113.9","count":50,"refused":40,"first_seen":7},{"key":"a\u001fb"},{"count":3}]}],
             "geo_restriction":{"type":"whitelist","blocked":5}}"#,
        )
        .unwrap();
        assert_eq!(r.pop, "ashburn");
        let names: Vec<_> = r
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("no-admin", "rule"),
                ("api-per-ip", "rate"),
                (GEO_RULE, "geo")
            ]
        );
        let rate = &r.rules[1];
        assert_eq!(
            (rate.limit, rate.blocked, rate.allowed),
            (Some(50), 0.0, 1200.0)
        );
        assert_eq!(rate.top_keys.len(), 2, "an entry without a key is skipped");
        assert_eq!(rate.top_keys[0].refused, 40.0);
        assert_eq!(display_key(&rate.top_keys[1].key), "a + b");
        assert_eq!(r.rules[2].blocked, 5.0);
        assert!(parse("[]").is_err() && parse("<html>").is_err());
        assert!(parse(r#"{"geo_restriction":{"type":"none","blocked":0}}"#)
            .unwrap()
            .rules
            .is_empty());
    }
}
