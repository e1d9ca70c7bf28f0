//! Both versions side by side during a canary or blue/green rollout (`meridian rollout
//! --strategy canary|linear|blue-green`): the region's balancer then forwards part of each
//! target group's traffic to the group's green twin (`<group>-green`), and its per-group
//! series (`meridian_lb_requests_total` and
//! `meridian_lb_target_group_request_duration_seconds` by `target_group`) tell the two
//! apart. The versions' names come from the supervisor's running rollout
//! (`meridian_supervisor_rollout`): blue is `previous`, green is `version`.

use crate::reading::{quantile, Reading};
use crate::series::Store;
use serde::Serialize;

/// The twin suffix the balancer gives a green group (`meridian-lb`'s `TWIN_SUFFIX`).
const GREEN: &str = "-green";

/// One side of a traffic-shifting rollout in one region, over the last tick.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct VersionView {
    /// `blue` (the version serving before) or `green` (the one rolling out).
    pub side: &'static str,
    /// The service version, when a rollout is running (the supervisor says which).
    pub version: Option<String>,
    pub rps: Option<f64>,
    /// 5xx answers as a share of the side's answers (None without answers).
    pub error_rate: Option<f64>,
    pub p95_ms: Option<f64>,
}

fn side_of(group: Option<&str>) -> Option<&'static str> {
    match group {
        None | Some("none") => None,
        Some(g) if g.ends_with(GREEN) => Some("green"),
        Some(_) => Some("blue"),
    }
}

/// (previous, version) of the rollout the supervisor runs now, if any.
pub(super) fn running_rollout(supervisor: Option<&Reading>) -> Option<(String, String)> {
    supervisor?
        .all("meridian_supervisor_rollout")
        .find(|s| s.label("state") == Some("running") && s.value > 0.5)
        .map(|s| {
            (
                s.label("previous").unwrap_or_default().to_owned(),
                s.label("version").unwrap_or_default().to_owned(),
            )
        })
}

/// Blue and green of a region's balancer reading; empty unless green answered during
/// the tick (no twin in use: nothing to compare). Each side's numbers also go to the
/// series `region.<r>.<side>.rps|error_rate|p95_ms`.
pub(super) fn sides(
    region: &str,
    lb: &Reading,
    rollout: Option<&(String, String)>,
    store: &mut Store,
    sec: u64,
) -> Vec<VersionView> {
    let is = |side: &'static str| {
        move |s: &meridian_telemetry::exposition::Sample| {
            side_of(s.label("target_group")) == Some(side)
        }
    };
    if lb.delta("meridian_lb_requests_total", is("green")) <= 0.0 {
        return Vec::new();
    }
    ["blue", "green"]
        .into_iter()
        .map(|side| {
            let answers = lb.delta("meridian_lb_requests_total", is(side));
            let e5 = lb.delta("meridian_lb_requests_total", |s| {
                is(side)(s) && s.label("status").is_some_and(|c| c.starts_with('5'))
            });
            let b = lb.buckets_where(
                "meridian_lb_target_group_request_duration_seconds",
                is(side),
            );
            let v = VersionView {
                side,
                version: rollout.map(|(previous, version)| {
                    if side == "blue" {
                        previous.clone()
                    } else {
                        version.clone()
                    }
                }),
                rps: lb.rate("meridian_lb_requests_total", is(side)),
                error_rate: (answers > 0.0).then(|| e5 / answers),
                p95_ms: quantile(0.95, &b).map(|s| s * 1000.0),
            };
            let p = format!("region.{region}.{side}");
            for (k, x) in [
                ("rps", v.rps),
                ("error_rate", v.error_rate),
                ("p95_ms", v.p95_ms),
            ] {
                if let Some(x) = x {
                    store.push(&format!("{p}.{k}"), sec, x);
                }
            }
            v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Previous;
    use meridian_telemetry::exposition::parse;

    fn lb_text(blue: (u64, u64), green: (u64, u64)) -> String {
        format!(
            "meridian_lb_requests_total{{target=\"a\",status=\"200\",target_group=\"default\"}} {}\n\
meridian_lb_requests_total{{target=\"a\",status=\"500\",target_group=\"default\"}} {}\n\
meridian_lb_requests_total{{target=\"b\",status=\"200\",target_group=\"default-green\"}} {}\n\
meridian_lb_requests_total{{target=\"b\",status=\"500\",target_group=\"default-green\"}} {}\n\
meridian_lb_target_group_request_duration_seconds_bucket{{target_group=\"default\",le=\"0.01\"}} {}\n\
meridian_lb_target_group_request_duration_seconds_bucket{{target_group=\"default\",le=\"+Inf\"}} {}\n\
meridian_lb_target_group_request_duration_seconds_bucket{{target_group=\"default-green\",le=\"0.01\"}} 0\n\
meridian_lb_target_group_request_duration_seconds_bucket{{target_group=\"default-green\",le=\"0.1\"}} {}\n\
meridian_lb_target_group_request_duration_seconds_bucket{{target_group=\"default-green\",le=\"+Inf\"}} {}\n",
            blue.0 - blue.1,
            blue.1,
            green.0 - green.1,
            green.1,
            blue.0,
            blue.0,
            green.0,
            green.0
        )
    }

    #[test]
    fn blue_and_green_side_by_side_while_green_takes_traffic() {
        let mut prev = Previous::default();
        let mut store = Store::new(60, 100);
        let first = prev.read(parse(&lb_text((100, 0), (0, 0))), 0.0);
        assert!(sides("r", &first, None, &mut store, 0).is_empty());
        // One second later: blue answered 95 (no 5xx), green 5 of which 1 was a 5xx.
        let r = prev.read(parse(&lb_text((195, 0), (5, 1))), 1.0);
        let rollout = ("1".to_owned(), "2".to_owned());
        let v = sides("r", &r, Some(&rollout), &mut store, 1);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].side, v[0].version.as_deref()), ("blue", Some("1")));
        assert_eq!((v[1].side, v[1].version.as_deref()), ("green", Some("2")));
        assert_eq!(v[0].rps, Some(95.0));
        assert_eq!(v[1].rps, Some(5.0));
        assert_eq!(v[0].error_rate, Some(0.0));
        assert_eq!(v[1].error_rate, Some(0.2));
        assert!(v[0].p95_ms.unwrap() <= 10.0, "{:?}", v[0]);
        assert!(v[1].p95_ms.unwrap() > 10.0, "{:?}", v[1]);
        assert!(store.get("region.r.green.error_rate").is_some());
        // Green idle again (the rollout ended): nothing to compare.
        let r = prev.read(parse(&lb_text((300, 0), (5, 1))), 2.0);
        assert!(sides("r", &r, None, &mut store, 2).is_empty());
    }

    #[test]
    fn the_running_rollout_names_the_versions() {
        let mut prev = Previous::default();
        let text = "meridian_supervisor_rollout{version=\"2\",previous=\"1\",state=\"running\",reason=\"\"} 1\n\
meridian_supervisor_rollout{version=\"1\",previous=\"0\",state=\"succeeded\",reason=\"\"} 1\n";
        let r = prev.read(parse(text), 0.0);
        assert_eq!(
            running_rollout(Some(&r)),
            Some(("1".to_owned(), "2".to_owned()))
        );
        assert_eq!(running_rollout(None), None);
    }
}
