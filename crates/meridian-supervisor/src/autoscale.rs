//! ECS service auto scaling with a target tracking policy (`[service.autoscaling]`), run
//! by the supervisor: one task per region reads the metric every `metric_interval`
//! (`autoscale_metrics.rs`), asks the policy (`autoscale_policy.rs`), and changes the
//! region's instances as a rollout does, with the same parts (`instances.rs`,
//! `rollout_lb.rs`): a scale-out starts instances in the homes set aside for them
//! (`Config::scaling_homes`), waits for their health checks, registers them and waits
//! until the balancer calls them healthy; a scale-in deregisters the last ones, waits out
//! their drain, and stops them. A scaling activity holds the lock a rollout holds for its
//! whole run, and no datapoint counts while a rollout runs, so the two never overlap.

use crate::autoscale_metrics::Reader;
use crate::autoscale_policy::{Decision, Tracker};
use crate::autoscale_state::ScalingEvent;
use crate::fleet::{Fleet, Slot};
use crate::instances;
use crate::rollout_lb::Balancer;
use meridian_config::AutoScaling;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `GET /autoscaling` (open): every region's metric, desired and running counts and last
/// scaling activity.
pub(crate) fn routes<F: Fleet>(
    r: meridian_http::admin::Router<Arc<F>>,
) -> meridian_http::admin::Router<Arc<F>> {
    r.open(
        meridian_http::admin::READ,
        "/autoscaling",
        |shared, _| async move {
            match shared.config().service.autoscaling.as_ref() {
                Some(policy) => meridian_http::json(
                    http::StatusCode::OK,
                    serde_json::json!({ "policy": policy, "regions": shared.scaling().regions() })
                        .to_string(),
                ),
                None => meridian_http::json(
                    http::StatusCode::NOT_FOUND,
                    serde_json::json!({ "error": "autoscaling is off: the config has no [service.autoscaling]" })
                        .to_string(),
                ),
            }
        },
    )
}

/// Starts a scaler per region when the config asks for autoscaling.
pub(crate) fn spawn(shared: Arc<dyn Fleet>) {
    let Some(policy) = shared.config().service.autoscaling.clone() else {
        return;
    };
    for r in &shared.config().regions {
        let running = crate::rollout_slots::running_in(&shared, &r.name) as u32;
        shared.scaling().update(&r.name, |s| {
            s.metric = policy.metric.as_str();
            s.target = policy.target;
            s.min = policy.min;
            s.max = policy.max;
            s.desired = running;
            s.running = running;
        });
        tokio::spawn(scale_region(shared.clone(), policy.clone(), r.name.clone()));
    }
}

/// An instance's two homes (its own and its replacement), either of which may run it.
struct Position {
    home: Arc<Slot>,
    other: Option<Arc<Slot>>,
}

impl Position {
    /// The slot that runs the instance, if it runs.
    fn running(&self) -> Option<&Arc<Slot>> {
        std::iter::once(&self.home)
            .chain(&self.other)
            .find(|s| s.active.load(Ordering::Acquire))
    }
}

fn positions(shared: &Arc<dyn Fleet>, region: &str) -> Vec<Position> {
    let cfg = shared.config();
    cfg.service_homes(region)
        .iter()
        .filter_map(|n| {
            Some(Position {
                home: instances::slot(shared, &n.name)?,
                other: cfg
                    .replacement_of(n)
                    .and_then(|r| instances::slot(shared, &r.name)),
            })
        })
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn scale_region(shared: Arc<dyn Fleet>, policy: AutoScaling, region: String) {
    let mut tracker = Tracker::new(policy.clone());
    let mut reader = Reader::new(policy.metric);
    let began = Instant::now();
    let mut tick = tokio::time::interval(policy.metric_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lb: Option<Balancer> = None;
    loop {
        tick.tick().await;
        if shared.scaling().stopped.load(Ordering::Acquire) {
            return;
        }
        if lb.is_none() {
            lb = crate::rollout_lb::of_region(&shared, &region).await.ok();
        }
        let Some(balancer) = &lb else { continue };
        let ps = positions(&shared, &region);
        let pids: Vec<u32> = ps
            .iter()
            .filter_map(|p| p.running())
            .filter_map(|s| *s.pid.lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let running = ps.iter().filter(|p| p.running().is_some()).count() as u32;
        let Ok(text) = balancer.metrics().await else {
            continue; // a missed scrape is a missing datapoint, as in CloudWatch
        };
        let value = reader.datapoint(&text, &pids);
        shared.scaling().update(&region, |s| {
            s.value = value;
            s.running = running;
        });
        let rolling = shared
            .rollout()
            .report()
            .is_some_and(|r| r.state == "running");
        let (Some(value), false) = (value, rolling) else {
            tracker.reset();
            continue;
        };
        let decision = tracker.observe(began.elapsed(), running, value);
        let (out, to, cause) = match decision {
            Decision::Hold => continue,
            Decision::Out { to, cause } => (true, to, cause),
            Decision::In { to, cause } => (false, to, cause),
        };
        // A rollout that began since holds the lock: this datapoint no longer counts.
        let Ok(_guard) = shared.scaling().lock.try_lock() else {
            tracker.reset();
            continue;
        };
        tracker.record(began.elapsed(), out);
        let direction = if out { "out" } else { "in" };
        shared.scaling().count(&region, direction);
        let mut event = ScalingEvent {
            at: unix_now(),
            direction,
            from: running,
            to,
            state: "running",
            cause,
        };
        shared.scaling().update(&region, |s| {
            s.desired = to;
            s.last_event = Some(event.clone());
        });
        shared.event(&format!(
            "autoscaling: {region} scaling {direction} from {running} to {to}: {}",
            event.cause
        ));
        let result = if out {
            scale_out(&shared, balancer, &ps, to).await
        } else {
            scale_in(&shared, balancer, &ps, to).await
        };
        let running = positions(&shared, &region)
            .iter()
            .filter(|p| p.running().is_some())
            .count() as u32;
        event.state = if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        };
        if let Err(e) = &result {
            event.cause = format!("{}; failed: {e}", event.cause);
        }
        shared.event(&format!(
            "autoscaling: {region} scaling {direction} {}: {running} running",
            event.state
        ));
        shared.scaling().update(&region, |s| {
            s.running = running;
            s.desired = running;
            s.last_event = Some(event);
        });
        shared.publish();
    }
}

/// Starts instances in the first free homes until `to` run, waits for their health
/// checks, registers them and waits until the balancer sends them traffic. Those that do
/// not pass are stopped (they were never registered).
async fn scale_out(
    shared: &Arc<dyn Fleet>,
    lb: &Balancer,
    ps: &[Position],
    to: u32,
) -> Result<(), String> {
    let running = ps.iter().filter(|p| p.running().is_some()).count();
    let new: Vec<&Arc<Slot>> = ps
        .iter()
        .filter(|p| p.running().is_none())
        .map(|p| &p.home)
        .take((to as usize).saturating_sub(running))
        .collect();
    let version = crate::rollout::current_version(shared);
    for (i, s) in new.iter().enumerate() {
        if let Err(e) = instances::start(shared, s, &version) {
            // Nothing was registered yet: the ones already started just stop.
            for started in &new[..i] {
                instances::stop(shared, started).await;
            }
            return Err(format!("cannot start {}: {e}", s.spec.name));
        }
    }
    let timeout = shared.config().service.deployment.health_check_timeout;
    let deadline = Instant::now() + timeout;
    let mut failed = None;
    for s in &new {
        let left = deadline.saturating_duration_since(Instant::now());
        let joined = match instances::wait_healthy(shared, s, left).await {
            Ok(()) => join(lb, s, timeout).await,
            Err(detail) => Err(format!(
                "{} did not pass its health checks within {}s: {detail}",
                s.spec.name,
                timeout.as_secs()
            )),
        };
        if let Err(e) = joined {
            let _ = lb.deregister(&s.spec.name).await;
            instances::stop(shared, s).await;
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

async fn join(lb: &Balancer, s: &Slot, timeout: Duration) -> Result<(), String> {
    lb.register(&s.spec).await?;
    lb.wait_for(&s.spec.name, "healthy", timeout, None, |state, health| {
        state == "registered" && health == "healthy"
    })
    .await
}

/// Deregisters the last running instances until `to` run, waits out their drain (the
/// deregistration delay: requests in flight finish) and stops them.
async fn scale_in(
    shared: &Arc<dyn Fleet>,
    lb: &Balancer,
    ps: &[Position],
    to: u32,
) -> Result<(), String> {
    let running: Vec<&Arc<Slot>> = ps.iter().filter_map(|p| p.running()).collect();
    let gone = &running[(to as usize).min(running.len())..];
    // An instance the balancer could not be told about keeps running and serving.
    let (mut draining, mut leaving, mut failed) = (Vec::new(), Vec::new(), None);
    for s in gone {
        match lb.deregister(&s.spec.name).await {
            Ok(true) => {
                draining.push(*s);
                leaving.push(*s);
            }
            Ok(false) => leaving.push(*s),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    let bound = crate::rollout_lb::drain_bound(shared.config());
    for s in &draining {
        let drained = lb
            .wait_for(&s.spec.name, "drained", bound, None, |state, _| {
                state == "unused"
            })
            .await;
        if let Err(e) = drained {
            failed.get_or_insert(e);
        }
    }
    for s in leaving {
        instances::stop(shared, s).await;
    }
    failed.map_or(Ok(()), Err)
}
