//! Canary, linear and blue/green rollouts (`rollout_strategy.rs`), CodeDeploy's way for
//! ECS: region by region (the primary first), the new version's instances start in their
//! replacement homes and join a green twin of each target group at the region's balancer;
//! once green is healthy the balancer's weights shift traffic to it step by step, and
//! every hold is watched by the rollback alarm (green's 5xx rate against blue's, green's
//! health checks). An alarm puts the weights back to all-blue at once, drains and stops
//! green, and the rollout rolls back. After the last shift (100%) and the termination
//! wait, the new instances join the groups themselves, the weights go back to all-blue
//! (now the new version), and the old instances drain and stop: the balancer looks as it
//! did before, with the new instances.

use crate::fleet::Fleet;
use crate::instances;
use crate::rollout_lb::Balancer;
use crate::rollout_slots::{note, positions, version_of, Position};
use crate::rollout_strategy::{green_worse, Shift, Shifting};
use crate::rollout_twin_lb::Sides;
use meridian_config::DeploymentConfiguration;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct Canary<'a> {
    pub(crate) shared: &'a Arc<dyn Fleet>,
    pub(crate) version: &'a str,
    pub(crate) previous: &'a str,
    pub(crate) conf: &'a DeploymentConfiguration,
    pub(crate) shifting: &'a Shifting,
}

impl Canary<'_> {
    pub(crate) async fn run(&self) -> Result<(), String> {
        for region in &crate::rollout_slots::regions_in_order(self.shared) {
            let ps: Vec<Position> = region
                .azs
                .iter()
                .flat_map(|az| positions(self.shared, &region.name, az, self.version))
                .collect();
            if ps.is_empty() {
                continue;
            }
            let lb = crate::rollout_lb::of_region(self.shared, &region.name).await?;
            note(
                self.shared,
                format!(
                    "{}: {}: starting {} instance(s) of version {} in the green twin of the target groups",
                    region.name,
                    self.shifting.name(),
                    ps.len(),
                    self.version
                ),
            );
            if let Err(reason) = self.shift(&lb, &region.name, &ps).await {
                self.back_to_blue(&lb, &region.name, &ps).await;
                return Err(reason);
            }
            self.promote(&lb, &region.name, &ps).await?;
        }
        Ok(())
    }

    fn green_names(ps: &[Position]) -> Vec<String> {
        ps.iter().map(|p| p.new.spec.name.clone()).collect()
    }

    /// Green up and healthy, then every shift with its hold under the alarm.
    async fn shift(&self, lb: &Balancer, region: &str, ps: &[Position]) -> Result<(), String> {
        let twins = lb.make_twins().await?;
        for p in ps {
            instances::start(self.shared, &p.new, self.version)
                .map_err(|e| format!("cannot start {}: {e}", p.new.spec.name))?;
        }
        let deadline = Instant::now() + self.conf.health_check_timeout;
        for p in ps {
            let left = deadline.saturating_duration_since(Instant::now());
            instances::wait_healthy(self.shared, &p.new, left)
                .await
                .map_err(|detail| {
                    format!(
                        "{} (version {}) did not pass its health checks within {}s: {detail}",
                        p.new.spec.name,
                        self.version,
                        self.conf.health_check_timeout.as_secs()
                    )
                })?;
        }
        for p in ps {
            lb.register_green(&p.new.spec).await?;
        }
        for p in ps {
            lb.wait_side(
                &p.new.spec.name,
                true,
                "healthy",
                self.conf.health_check_timeout,
                |state, health| state == "registered" && health == "healthy",
            )
            .await?;
        }
        note(
            self.shared,
            format!(
                "{region}: green ({}) healthy at {} in {}",
                Self::green_names(ps).join(", "),
                lb.name,
                twins.join(", ")
            ),
        );
        let base = lb.sides().await?;
        for Shift { percent, hold } in self.shifting.shifts() {
            lb.set_green(percent).await?;
            note(
                self.shared,
                format!(
                    "{region}: {percent}% of traffic to version {} ({}% stays on {}); watching for {}s",
                    self.version,
                    100 - percent,
                    self.previous,
                    hold.as_secs_f64()
                ),
            );
            self.watch(lb, ps, &base, hold).await?;
        }
        Ok(())
    }

    /// The rollback alarm for `hold`: green's 5xx rate against blue's since green took
    /// traffic, and green's health.
    async fn watch(
        &self,
        lb: &Balancer,
        ps: &[Position],
        base: &Sides,
        hold: Duration,
    ) -> Result<(), String> {
        let until = Instant::now() + hold;
        loop {
            if let Ok(now) = lb.sides().await {
                let d = now.since(base);
                if let Some(why) = green_worse(d.green, d.blue, self.conf.max_5xx_rate) {
                    return Err(format!("{}: {why}", lb.name));
                }
            }
            for p in ps {
                let name = &p.new.spec.name;
                if let Ok(Some((_, health))) = lb.side_target(name, true).await {
                    if health == "unhealthy" {
                        return Err(format!(
                            "{name} (version {}) failed its health checks at {} while it took traffic",
                            self.version, lb.name
                        ));
                    }
                }
            }
            if Instant::now() >= until {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The alarm rang (or green never came up): all traffic back to blue at once, green
    /// drained out of the twins and stopped.
    async fn back_to_blue(&self, lb: &Balancer, region: &str, ps: &[Position]) {
        if let Err(e) = lb.set_green(0).await {
            note(self.shared, format!("{region}: {e}"));
        }
        note(
            self.shared,
            format!(
                "{region}: all traffic back to version {} at {}",
                self.previous, lb.name
            ),
        );
        let bound = crate::rollout_lb::drain_bound(self.shared.config());
        for p in ps {
            let name = &p.new.spec.name;
            if let Ok(true) = lb.deregister_side(name, true).await {
                let _ = lb
                    .wait_side(name, true, "drained", bound, |s, _| s == "unused")
                    .await;
            }
            instances::stop(self.shared, &p.new).await;
            note(
                self.shared,
                format!("{name} (version {}) stopped", self.version),
            );
        }
    }

    /// Green takes blue's place in the groups: the new instances join them, the old ones
    /// leave, the weights go back to the groups (all new now), green empties, and the old
    /// instances stop once drained.
    async fn promote(&self, lb: &Balancer, region: &str, ps: &[Position]) -> Result<(), String> {
        // Until the old instances leave the groups, blue can take everything back.
        if let Err(reason) = self.join_groups(lb, ps).await {
            for p in ps {
                let _ = lb.deregister_side(&p.new.spec.name, false).await;
            }
            self.back_to_blue(lb, region, ps).await;
            return Err(reason);
        }
        // The old instances leave the groups. If one cannot, blue takes everything back:
        // those that left are registered again before green's instances go.
        for (i, p) in ps.iter().enumerate() {
            if let Err(reason) = lb.deregister_side(&p.old.spec.name, false).await {
                for q in &ps[..i] {
                    if let Err(e) = lb.register(&q.old.spec).await {
                        note(self.shared, format!("{region}: {e}"));
                    }
                }
                for q in ps {
                    let _ = lb.deregister_side(&q.new.spec.name, false).await;
                }
                self.back_to_blue(lb, region, ps).await;
                return Err(reason);
            }
        }
        // From here the new instances serve from the groups and the old ones are gone from
        // them: going back is no longer possible, so a failure below is said and the
        // promotion goes on (a twin without healthy targets takes no share).
        if let Err(e) = lb.set_green(0).await {
            note(
                self.shared,
                format!("{region}: {e}; green keeps its share until the next rollout"),
            );
        }
        note(
            self.shared,
            format!(
                "{region}: version {} serves from the target groups at {}; the old instances drain",
                self.version, lb.name
            ),
        );
        let bound = crate::rollout_lb::drain_bound(self.shared.config());
        for p in ps {
            let name = &p.new.spec.name;
            let left = match lb.deregister_side(name, true).await {
                Ok(true) => lb
                    .wait_side(name, true, "drained", bound, |s, _| s == "unused")
                    .await
                    .map(|_| ()),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = left {
                note(self.shared, format!("{region}: {name} leaving green: {e}"));
            }
        }
        for p in ps {
            let name = &p.old.spec.name;
            // Stopped once drained, or at the bound: it no longer takes new requests.
            if let Err(e) = lb
                .wait_side(name, false, "drained", bound, |s, _| s == "unused")
                .await
            {
                note(self.shared, format!("{region}: {name}: {e}; stopping it"));
            }
            instances::stop(self.shared, &p.old).await;
            note(
                self.shared,
                format!("{name} (version {}) stopped", version_of(&p.old)),
            );
            self.shared.rollout().update(|r| {
                if let Some(g) = r.regions.iter_mut().find(|g| g.region == region) {
                    g.done += 1;
                }
            });
        }
        Ok(())
    }

    /// The new instances join the groups themselves (they take traffic there once the
    /// weight leaves green).
    async fn join_groups(&self, lb: &Balancer, ps: &[Position]) -> Result<(), String> {
        let timeout = self.conf.health_check_timeout;
        for p in ps {
            lb.register(&p.new.spec).await?;
        }
        for p in ps {
            lb.wait_side(&p.new.spec.name, false, "healthy", timeout, |s, h| {
                s == "registered" && h == "healthy"
            })
            .await?;
        }
        Ok(())
    }
}
