//! `meridian rollout`: a rolling update of the service instances, ECS's way, run by the
//! supervisor so that it goes on whatever happens to the terminal that asked for it.
//!
//! Region by region (the primary first), AZ by AZ: start new instances at the new version
//! in their replacement homes (`instances.rs`), wait until they pass health checks,
//! register them at the region's balancer and wait until it calls them healthy, then
//! deregister the old ones, wait out their drain (the deregistration delay) and stop them;
//! how many at a time comes from `minimum_healthy_percent` and `maximum_percent`
//! (`rollout_plan.rs`). The deployment circuit breaker: a new instance that does not pass
//! its health checks within `health_check_timeout`, or a region whose balancer answers more
//! than `max_5xx_rate` 5xx while the rollout is there, stops the rollout, and every
//! instance goes back to the old version. Every step is an event (`events.log`) and a
//! line of `GET /rollout`. `POST /rollout?...&strategy=canary|linear|blue-green` shifts
//! traffic through green twins of the target groups instead (`rollout_canary.rs`); the
//! rollback after it is this file's.

use crate::fleet::{Fleet, Report, Slot};
use crate::instances;
use crate::rollout_lb::Balancer;
use crate::rollout_plan::{plan, Step};
use crate::rollout_slots::{active, note, positions, version_of, Position};
use crate::rollout_strategy::{Shifting, Strategy};
use meridian_config::{DeploymentConfiguration, Role};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `GET /rollout` (open) and `POST /rollout?version=V` (admin token).
pub(crate) fn routes<F: Fleet>(
    r: meridian_http::admin::Router<Arc<F>>,
) -> meridian_http::admin::Router<Arc<F>> {
    r.open(
        meridian_http::admin::READ,
        "/rollout",
        |shared, _| async move {
            match shared.rollout().report() {
                Some(r) => meridian_http::json(
                    http::StatusCode::OK,
                    serde_json::to_string(&r).unwrap_or_default(),
                ),
                None => meridian_http::json(
                    http::StatusCode::NOT_FOUND,
                    serde_json::json!({ "error": "no rollout has run" }).to_string(),
                ),
            }
        },
    )
    .guarded(
        &[http::Method::POST],
        "/rollout",
        |shared, req| async move {
            let query = req.uri().query();
            let version = meridian_http::percent::query_param(query, "version");
            let fleet: Arc<dyn Fleet> = shared;
            let shifting = match Shifting::from_query(query) {
                Ok(s) => s,
                Err(e) => {
                    return meridian_http::json(
                        http::StatusCode::BAD_REQUEST,
                        serde_json::json!({ "error": e.to_string() }).to_string(),
                    )
                }
            };
            match begin(&fleet, version, shifting) {
                Ok(r) => meridian_http::json(
                    http::StatusCode::ACCEPTED,
                    serde_json::to_string(&r).unwrap_or_default(),
                ),
                Err((status, e)) => {
                    meridian_http::json(status, serde_json::json!({ "error": e }).to_string())
                }
            }
        },
    )
}

/// The version the service instances run now (the first running one's).
pub(crate) fn current_version(shared: &Arc<dyn Fleet>) -> String {
    shared
        .slots()
        .iter()
        .find(|s| s.spec.role == Role::Service && s.active.load(Ordering::Acquire))
        .map(|s| s.version.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_else(|| shared.config().service.version.clone())
}

fn begin(
    shared: &Arc<dyn Fleet>,
    version: Option<String>,
    shifting: Shifting,
) -> Result<Report, (http::StatusCode, String)> {
    let bad = |e: String| (http::StatusCode::BAD_REQUEST, e);
    let version = version.ok_or_else(|| bad("give version=V".into()))?;
    if !meridian_config::valid_version(&version) {
        return Err(bad(format!(
            "`{version}` is not a service version: use 1 to 64 letters, digits, `.`, `_` or `-`"
        )));
    }
    if !matches!(
        shared.config().service.runtime,
        meridian_config::ServiceRuntime::Demo { .. }
    ) {
        return Err(bad(
            "rollouts of `runtime = \"command\"` services are not built yet (a new command line per version)".into(),
        ));
    }
    let previous = current_version(shared);
    if previous == version {
        return Err((
            http::StatusCode::CONFLICT,
            format!("every instance already runs version {version}"),
        ));
    }
    let report = {
        let mut slot = shared.rollout().0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|r| r.state == "running") {
            return Err((
                http::StatusCode::CONFLICT,
                "a rollout is running; wait for it to finish (GET /rollout)".into(),
            ));
        }
        let r = Report {
            version: version.clone(),
            previous: previous.clone(),
            strategy: shifting.name(),
            state: "running",
            reason: None,
            steps: Vec::new(),
            regions: Vec::new(),
        };
        *slot = Some(r.clone());
        r
    };
    shared.rollout().publish_state(None);
    tokio::spawn(run(shared.clone(), version, previous, shifting));
    Ok(report)
}

async fn run(shared: Arc<dyn Fleet>, version: String, previous: String, shifting: Shifting) {
    // No scaling activity while the instances change version (`autoscale.rs`).
    let _no_scaling = shared.scaling().lock.lock().await;
    note(
        &shared,
        format!("from version {previous} to {version} ({})", shifting.name()),
    );
    let conf = shared.config().service.deployment.clone();
    let forward = Roll {
        shared: &shared,
        version: &version,
        conf: &conf,
        breaker: true,
    };
    let result = match shifting.strategy {
        Strategy::Rolling => forward.run().await,
        _ => {
            let canary = crate::rollout_canary::Canary {
                shared: &shared,
                version: &version,
                previous: &previous,
                conf: &conf,
                shifting: &shifting,
            };
            canary.run().await
        }
    };
    let (state, reason) = match result {
        Ok(()) => {
            note(
                &shared,
                format!("finished: every instance runs version {version}"),
            );
            ("succeeded", None)
        }
        Err(reason) if conf.circuit_breaker => {
            note(
                &shared,
                format!("circuit breaker: {reason}; rolling back to version {previous}"),
            );
            let back = Roll {
                shared: &shared,
                version: &previous,
                conf: &conf,
                breaker: false,
            };
            match back.rollback().await {
                Ok(()) => {
                    note(
                        &shared,
                        format!("rolled back: every instance runs version {previous}"),
                    );
                    ("rolled_back", Some(reason))
                }
                Err(e) => {
                    note(&shared, format!("rollback failed: {e}"));
                    (
                        "failed",
                        Some(format!("{reason}; the rollback failed too: {e}")),
                    )
                }
            }
        }
        Err(reason) => {
            note(
                &shared,
                format!("stopped (circuit_breaker = false): {reason}"),
            );
            ("failed", Some(reason))
        }
    };
    shared.rollout().update(|r| {
        r.state = state;
        r.reason = reason;
    });
    shared.rollout().publish_state(Some("running"));
}

struct Roll<'a> {
    shared: &'a Arc<dyn Fleet>,
    version: &'a str,
    conf: &'a DeploymentConfiguration,
    /// Whether the circuit breaker watches (not while rolling back).
    breaker: bool,
}

impl Roll<'_> {
    async fn balancer(&self, region: &str) -> Result<Balancer, String> {
        crate::rollout_lb::of_region(self.shared, region).await
    }

    fn max_5xx(&self) -> Option<f64> {
        self.breaker.then_some(self.conf.max_5xx_rate)
    }

    fn drain_bound(&self) -> Duration {
        crate::rollout_lb::drain_bound(self.shared.config())
    }

    async fn run(&self) -> Result<(), String> {
        for region in &crate::rollout_slots::regions_in_order(self.shared) {
            let lb = self.balancer(&region.name).await?;
            for az in &region.azs {
                let ps = positions(self.shared, &region.name, az, self.version);
                if ps.is_empty() {
                    continue;
                }
                note(
                    self.shared,
                    format!("{} / {az}: replacing {} instance(s)", region.name, ps.len()),
                );
                self.roll_az(&lb, &region.name, &ps).await?;
            }
        }
        Ok(())
    }

    async fn roll_az(&self, lb: &Balancer, region: &str, ps: &[Position]) -> Result<(), String> {
        let steps = plan(
            ps.len(),
            self.conf.minimum_healthy_percent,
            self.conf.maximum_percent,
        )
        .map_err(|e| e.to_string())?;
        let (mut started, mut stopped) = (0, 0);
        for step in steps {
            match step {
                Step::Start(k) => {
                    self.start_batch(lb, &ps[started..started + k]).await?;
                    started += k;
                }
                Step::Stop(k) => {
                    for p in &ps[stopped..stopped + k] {
                        self.retire(lb, &p.old).await?;
                        self.shared.rollout().update(|r| {
                            if let Some(g) = r.regions.iter_mut().find(|g| g.region == region) {
                                g.done += 1;
                            }
                        });
                    }
                    stopped += k;
                }
            }
        }
        Ok(())
    }

    /// Starts the batch's new instances, waits for their health checks, registers them
    /// and waits until the balancer sends them traffic. New instances that fail are
    /// stopped before the error returns (they were never registered).
    async fn start_batch(&self, lb: &Balancer, batch: &[Position]) -> Result<(), String> {
        for p in batch {
            instances::start(self.shared, &p.new, self.version)
                .map_err(|e| format!("cannot start {}: {e}", p.new.spec.name))?;
            note(
                self.shared,
                format!(
                    "started {} (version {}) in place of {}",
                    p.new.spec.name, self.version, p.old.spec.name
                ),
            );
        }
        let deadline = Instant::now() + self.conf.health_check_timeout;
        for p in batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Err(detail) = instances::wait_healthy(self.shared, &p.new, left).await {
                for q in batch {
                    instances::stop(self.shared, &q.new).await;
                }
                return Err(format!(
                    "{} (version {}) did not pass its health checks within {}s: {detail}",
                    p.new.spec.name,
                    self.version,
                    self.conf.health_check_timeout.as_secs()
                ));
            }
            if self.breaker {
                lb.check_5xx(self.conf.max_5xx_rate).await?;
            }
        }
        for p in batch {
            lb.register(&p.new.spec).await?;
            lb.wait_for(
                &p.new.spec.name,
                "healthy",
                self.conf.health_check_timeout,
                self.max_5xx(),
                |state, health| state == "registered" && health == "healthy",
            )
            .await?;
            note(
                self.shared,
                format!("{} registered at {} and healthy", p.new.spec.name, lb.name),
            );
        }
        // The bake time: the new instances serve beside the old ones while the circuit
        // breaker watches the region's 5xx rate, before any old one goes.
        if self.breaker && !self.conf.bake_time.is_zero() {
            let until = Instant::now() + self.conf.bake_time;
            while Instant::now() < until {
                lb.check_5xx(self.conf.max_5xx_rate).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lb.check_5xx(self.conf.max_5xx_rate).await?;
        }
        Ok(())
    }

    /// Deregisters an instance, waits for its drain, stops it.
    async fn retire(&self, lb: &Balancer, slot: &Slot) -> Result<(), String> {
        let name = &slot.spec.name;
        if lb.deregister(name).await? {
            note(
                self.shared,
                format!("{name} deregistered from {}; draining", lb.name),
            );
            lb.wait_for(
                name,
                "drained",
                self.drain_bound(),
                self.max_5xx(),
                |state, _| state == "unused",
            )
            .await?;
        }
        instances::stop(self.shared, slot).await;
        note(
            self.shared,
            format!("{name} (version {}) stopped", version_of(slot)),
        );
        Ok(())
    }

    /// Back to `self.version` everywhere: an instance whose replacement is also up loses
    /// the one on the other version (deregistered first if it was registered), then any
    /// instance still on another version is replaced as a rollout would.
    async fn rollback(&self) -> Result<(), String> {
        let cfg = &self.shared.config();
        for region in &cfg.regions {
            let lb = self.balancer(&region.name).await?;
            for n in cfg.service_homes(&region.name) {
                let (Some(a), Some(b)) = (
                    instances::slot(self.shared, &n.name),
                    cfg.replacement_of(&n)
                        .and_then(|r| instances::slot(self.shared, &r.name)),
                ) else {
                    continue;
                };
                if active(&a) && active(&b) {
                    let extra = if version_of(&a) == self.version {
                        &b
                    } else {
                        &a
                    };
                    self.retire(&lb, extra).await?;
                }
            }
        }
        self.run().await
    }
}
