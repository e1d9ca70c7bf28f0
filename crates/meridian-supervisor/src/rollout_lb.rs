//! What a rollout (and autoscaling) asks of a region's balancer, over its admin port with
//! the admin token: register and deregister one instance, its target state, its metrics,
//! and the region's 5xx share.

use crate::fleet::Fleet;
use meridian_config::{Config, NodeSpec};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// The balancer of `region`, reached with the deployment's admin token.
pub(crate) async fn of_region(shared: &Arc<dyn Fleet>, region: &str) -> Result<Balancer, String> {
    let cfg = shared.config();
    let admin = cfg
        .lb_admin(region)
        .ok_or_else(|| format!("region {region} has no balancer"))?;
    let token =
        meridian_http::secrets::AdminToken::load(&cfg.secrets.admin_token, shared.state_dir())
            .map_err(|e| format!("cannot read the admin token: {e}"))?
            .current();
    Ok(Balancer::new(format!("lb-{region}"), admin, token).await)
}

/// How long a deregistered target may take to drain: the longest deregistration delay of
/// any group, and some room for the balancer to say so.
pub(crate) fn drain_bound(cfg: &Config) -> Duration {
    let lb = &cfg.load_balancer;
    let delay = lb
        .effective_target_groups()
        .iter()
        .map(|g| g.deregistration_delay)
        .max()
        .unwrap_or(lb.deregistration_delay);
    delay + Duration::from_secs(10)
}

/// A region's balancer, as its admin port serves it.
pub(crate) struct Balancer {
    pub(crate) name: String,
    pub(crate) admin: SocketAddr,
    pub(crate) token: String,
    /// Responses and 5xx responses counted when the rollout reached the region.
    baseline: (u64, u64),
}

impl Balancer {
    pub(crate) async fn new(name: String, admin: SocketAddr, token: String) -> Self {
        let mut b = Balancer {
            name,
            admin,
            token,
            baseline: (0, 0),
        };
        b.baseline = b.responses().await.unwrap_or((0, 0));
        b
    }

    pub(crate) async fn call(
        &self,
        method: http::Method,
        path: &str,
    ) -> Result<(u16, String), String> {
        let a = meridian_http::client::call(
            self.admin,
            method,
            path,
            Some(&self.token),
            CALL_TIMEOUT,
            4 << 20,
        )
        .await
        .map_err(|e| format!("{} at {}: {e}", self.name, self.admin))?;
        Ok((a.status, String::from_utf8_lossy(&a.body).into_owned()))
    }

    pub(crate) async fn register(&self, spec: &NodeSpec) -> Result<(), String> {
        let path = format!(
            "/targets/register?target={}&az={}&name={}",
            spec.address,
            meridian_http::percent::encode(spec.az.as_deref().unwrap_or_default()),
            meridian_http::percent::encode(&spec.name)
        );
        match self.call(http::Method::POST, &path).await? {
            (200, _) => Ok(()),
            (s, body) => Err(format!(
                "{} refused to register {}: {s} {body}",
                self.name, spec.name
            )),
        }
    }

    /// Deregisters `name`; false when the balancer does not have it registered.
    pub(crate) async fn deregister(&self, name: &str) -> Result<bool, String> {
        let path = format!(
            "/targets/deregister?target={}",
            meridian_http::percent::encode(name)
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

    /// `name`'s (state, health) in the default group, as `/targets` says.
    pub(crate) async fn target(&self, name: &str) -> Result<Option<(String, String)>, String> {
        let (_, body) = self.call(http::Method::GET, "/targets").await?;
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{}: /targets: {e}", self.name))?;
        Ok(v["targets"].as_array().and_then(|ts| {
            ts.iter().find(|t| t["target"] == name).map(|t| {
                (
                    t["state"].as_str().unwrap_or_default().to_owned(),
                    t["health"].as_str().unwrap_or_default().to_owned(),
                )
            })
        }))
    }

    /// Waits until `name` is in (state, health) as `done` says, checking the 5xx share
    /// on the way; an error at `timeout` or when the share crosses `max_5xx`.
    pub(crate) async fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        max_5xx: Option<f64>,
        done: impl Fn(&str, &str) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(max) = max_5xx {
                self.check_5xx(max).await?;
            }
            last = self.target(name).await.ok().flatten().or(last);
            if let Some((state, health)) = &last {
                if done(state, health) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{name} was not {what} at {} within {}s (last: {last:?})",
                    self.name,
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The balancer's Prometheus text.
    pub(crate) async fn metrics(&self) -> Result<String, String> {
        match self.call(http::Method::GET, "/metrics").await? {
            (200, text) => Ok(text),
            (s, _) => Err(format!("{}: /metrics answered {s}", self.name)),
        }
    }

    /// All responses and 5xx responses the balancer has answered.
    async fn responses(&self) -> Result<(u64, u64), String> {
        Ok(count_responses(&self.metrics().await?))
    }

    /// The circuit breaker's second rule: the region's 5xx share since the rollout came
    /// (once at least 20 responses say anything) must stay at or under `max`.
    pub(crate) async fn check_5xx(&self, max: f64) -> Result<(), String> {
        let Ok((total, errors)) = self.responses().await else {
            return Ok(()); // a missed scrape is not a failure of the new version
        };
        let (total, errors) = (
            total.saturating_sub(self.baseline.0),
            errors.saturating_sub(self.baseline.1),
        );
        if total >= 20 && errors as f64 > max * total as f64 {
            return Err(format!(
                "{}'s 5xx rate is {:.1}% ({errors} of {total} responses since the rollout reached it), over the {:.1}% threshold",
                self.name,
                errors as f64 * 100.0 / total as f64,
                max * 100.0
            ));
        }
        Ok(())
    }
}

/// (all, 5xx) from the `meridian_lb_requests_total` lines of a Prometheus text.
pub(crate) fn count_responses(text: &str) -> (u64, u64) {
    let (mut total, mut errors) = (0, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("meridian_lb_requests_total{") else {
            continue;
        };
        let Some(n) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        total += n as u64;
        if rest.contains("status=\"5") {
            errors += n as u64;
        }
    }
    (total, errors)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_5xx_from_the_exposition() {
        let text = "# HELP x\nmeridian_lb_requests_total{target=\"a\",status=\"200\",target_group=\"d\"} 90\nmeridian_lb_requests_total{target=\"a\",status=\"502\",target_group=\"d\"} 10\nmeridian_lb_retries_total{reason=\"x\"} 5\n";
        assert_eq!(super::count_responses(text), (100, 10));
    }
}
