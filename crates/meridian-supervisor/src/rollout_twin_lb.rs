//! What a traffic-shifting rollout (`rollout_canary.rs`) asks of a region's balancer
//! besides what a rolling one does (`rollout_lb.rs`): the green twins of its target
//! groups, registering in and deregistering from them, the weight between blue and green,
//! and each side's answers and 5xx from the balancer's per-group counters.

use crate::rollout_lb::Balancer;
use meridian_config::NodeSpec;
use std::time::{Duration, Instant};

/// Answers and 5xx answers, blue's and green's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sides {
    pub(crate) blue: (u64, u64),
    pub(crate) green: (u64, u64),
}

impl Sides {
    /// What was counted since `base`.
    pub(crate) fn since(&self, base: &Sides) -> Sides {
        let d = |a: (u64, u64), b: (u64, u64)| (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
        Sides {
            blue: d(self.blue, base.blue),
            green: d(self.green, base.green),
        }
    }
}

/// Blue's and green's (answers, 5xx) from the `meridian_lb_requests_total` lines of a
/// Prometheus text: a line whose `target_group` ends in the twin suffix is green's; the
/// balancer's own answers (group `none`) are neither's.
pub(crate) fn count_sides(text: &str) -> Sides {
    let mut s = Sides::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("meridian_lb_requests_total{") else {
            continue;
        };
        let Some(n) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let group = label(rest, "target_group").unwrap_or("none");
        if group == "none" {
            continue;
        }
        let side = if group.ends_with(meridian_lb::TWIN_SUFFIX) {
            &mut s.green
        } else {
            &mut s.blue
        };
        side.0 += n as u64;
        if rest.contains("status=\"5") {
            side.1 += n as u64;
        }
    }
    s
}

/// A label's value in the `{...}` part of an exposition line.
pub(crate) fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let from = line.find(&key)? + key.len();
    let len = line[from..].find('"')?;
    Some(&line[from..from + len])
}

impl Balancer {
    async fn post(&self, path: &str, what: &str) -> Result<String, String> {
        match self.call(http::Method::POST, path).await? {
            (200, body) | (202, body) => Ok(body),
            (s, body) => Err(format!("{} refused to {what}: {s} {body}", self.name)),
        }
    }

    /// Makes the green twin of every target group (kept from an earlier rollout if
    /// there is one); their names.
    pub(crate) async fn make_twins(&self) -> Result<Vec<String>, String> {
        let (_, body) = self.call(http::Method::GET, "/target-groups").await?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("{}: /target-groups: {e}", self.name))?;
        let mut twins = Vec::new();
        for g in v["target_groups"].as_array().into_iter().flatten() {
            let name = g["target_group"].as_str().unwrap_or_default();
            let path = format!(
                "/target-groups/twin?group={}",
                meridian_http::percent::encode(name)
            );
            let made = self.post(&path, &format!("twin {name}")).await?;
            let made: serde_json::Value = serde_json::from_str(&made).unwrap_or_default();
            twins.push(made["twin"].as_str().unwrap_or_default().to_owned());
        }
        Ok(twins)
    }

    /// Sends `percent` of every twinned group's traffic to its twin.
    pub(crate) async fn set_green(&self, percent: u32) -> Result<(), String> {
        let path = format!("/target-groups/weights?percent={percent}");
        self.post(&path, &format!("send {percent}% to green"))
            .await
            .map(drop)
    }

    /// Registers an instance in the twins of the groups that take its AZ.
    pub(crate) async fn register_green(&self, spec: &NodeSpec) -> Result<(), String> {
        let path = format!(
            "/targets/register?target={}&az={}&name={}&twin=true",
            spec.address,
            meridian_http::percent::encode(spec.az.as_deref().unwrap_or_default()),
            meridian_http::percent::encode(&spec.name)
        );
        self.post(&path, &format!("register {} in green", spec.name))
            .await
            .map(drop)
    }

    /// Deregisters `name` from the twins (`green`) or from the groups only; false when it
    /// is not registered there.
    pub(crate) async fn deregister_side(&self, name: &str, green: bool) -> Result<bool, String> {
        let path = format!(
            "/targets/deregister?target={}&scope={}",
            meridian_http::percent::encode(name),
            if green { "twins" } else { "groups" }
        );
        match self.call(http::Method::POST, &path).await? {
            (202, _) => Ok(true),
            (404, _) => Ok(false),
            (s, body) => Err(format!(
                "{} refused to deregister {name}: {s} {body}",
                self.name
            )),
        }
    }

    /// `name`'s (state, health) in the twins (`green`) or the groups, as `/targets` says.
    pub(crate) async fn side_target(
        &self,
        name: &str,
        green: bool,
    ) -> Result<Option<(String, String)>, String> {
        let (_, body) = self.call(http::Method::GET, "/targets").await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{}: /targets: {e}", self.name))?;
        Ok(v["targets"].as_array().and_then(|ts| {
            ts.iter()
                .filter(|t| {
                    t["target_group"]
                        .as_str()
                        .is_some_and(|g| g.ends_with(meridian_lb::TWIN_SUFFIX) == green)
                })
                .find(|t| t["target"] == name)
                .map(|t| {
                    (
                        t["state"].as_str().unwrap_or_default().to_owned(),
                        t["health"].as_str().unwrap_or_default().to_owned(),
                    )
                })
        }))
    }

    /// Waits until `name` on one side is in (state, health) as `done` says.
    pub(crate) async fn wait_side(
        &self,
        name: &str,
        green: bool,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str, &str) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            last = self.side_target(name, green).await.ok().flatten().or(last);
            if let Some((state, health)) = &last {
                if done(state, health) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} was not {what} in the {} group at {} within {}s (last: {last:?})",
                    if green { "green" } else { "blue" },
                    self.name,
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Blue's and green's answers so far.
    pub(crate) async fn sides(&self) -> Result<Sides, String> {
        Ok(count_sides(&self.metrics().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::{count_sides, label, Sides};

    #[test]
    fn sides_are_told_apart_by_the_group_name() {
        let text =
            "meridian_lb_requests_total{target=\"a\",status=\"200\",target_group=\"default\"} 90\n\
meridian_lb_requests_total{target=\"a\",status=\"502\",target_group=\"default\"} 10\n\
meridian_lb_requests_total{target=\"b\",status=\"200\",target_group=\"default-green\"} 6\n\
meridian_lb_requests_total{target=\"b\",status=\"500\",target_group=\"default-green\"} 4\n\
meridian_lb_requests_total{target=\"none\",status=\"503\",target_group=\"none\"} 7\n";
        let s = count_sides(text);
        assert_eq!(
            s,
            Sides {
                blue: (100, 10),
                green: (10, 4)
            }
        );
        let later = Sides {
            blue: (150, 10),
            green: (30, 5),
        };
        assert_eq!(
            later.since(&s),
            Sides {
                blue: (50, 0),
                green: (20, 1)
            }
        );
        assert_eq!(label("a=\"1\",b=\"x y\"", "b"), Some("x y"));
        assert_eq!(label("a=\"1\"", "c"), None);
    }
}
