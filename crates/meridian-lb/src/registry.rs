//! Registering and deregistering one target while the balancer runs (ALB's
//! RegisterTargets and DeregisterTargets): what a rolling update does to each instance.
//!
//! A registered target is checked at once and takes requests once its first check passes
//! (while another target is healthy). A deregistered one takes no new request; requests in
//! flight finish and its WebSockets get a close frame, within the group's
//! `deregistration_delay`; then its checks stop and it is `unused`.

use crate::proxy::LoadBalancer;
use crate::target::{Target, TargetState};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("target {name} is registered at {registered}, not {asked}; deregister it first")]
    OtherAddress {
        name: String,
        registered: SocketAddr,
        asked: SocketAddr,
    },
    #[error(
        "target {0} is still draining; register it again once its deregistration delay is over"
    )]
    Draining(String),
    #[error("no target group takes targets in AZ {0}")]
    NoGroup(String),
    #[error("no registered target is named or addressed {0}")]
    Unknown(String),
    #[error(transparent)]
    Full(#[from] crate::targets::Full),
}

/// Which groups a deregistration takes a target out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every group and twin that holds it.
    All,
    /// The configured groups only.
    Groups,
    /// The green twins only (`twins.rs`).
    Twins,
}

impl LoadBalancer {
    /// Registers `name` at `addr` in every group that takes targets of `az`; the groups'
    /// names. Registering a registered target again changes nothing.
    pub fn register_target(
        &self,
        name: &str,
        addr: SocketAddr,
        az: &str,
    ) -> Result<Vec<String>, RegistrationError> {
        self.register_in(name, addr, az, false)
    }

    /// [`Self::register_target`], in the green twins of those groups instead (each made
    /// if it is not there yet: `twins.rs`).
    pub fn register_target_in_twins(
        &self,
        name: &str,
        addr: SocketAddr,
        az: &str,
    ) -> Result<Vec<String>, RegistrationError> {
        self.register_in(name, addr, az, true)
    }

    fn register_in(
        &self,
        name: &str,
        addr: SocketAddr,
        az: &str,
        twins: bool,
    ) -> Result<Vec<String>, RegistrationError> {
        let mut joined = Vec::new();
        for (i, g) in self.groups().iter().enumerate() {
            if g.config()
                .azs
                .as_ref()
                .is_some_and(|azs| !azs.iter().any(|a| a == az))
            {
                continue;
            }
            let g = if twins { self.twin_at(i) } else { g };
            self.join(g, name, addr, az)?;
            joined.push(g.name.clone());
        }
        if joined.is_empty() {
            return Err(RegistrationError::NoGroup(az.to_owned()));
        }
        tracing::info!(lb = %self.name(), target = name, %addr, groups = ?joined, "target registered");
        Ok(joined)
    }

    fn join(
        &self,
        g: &crate::target::TargetGroup,
        name: &str,
        addr: SocketAddr,
        az: &str,
    ) -> Result<(), RegistrationError> {
        let m = self.lb_metrics();
        let hc = g.config().health_check.clone();
        match g.index_of(name).map(|i| &g.targets[i]) {
            Some(t) if t.addr != addr => {
                return Err(RegistrationError::OtherAddress {
                    name: name.to_owned(),
                    registered: t.addr,
                    asked: addr,
                })
            }
            Some(t) if t.state() == TargetState::Registered => {}
            Some(t) if t.state() == TargetState::Draining => {
                return Err(RegistrationError::Draining(name.to_owned()))
            }
            Some(t) => {
                g.board
                    .reset(name, hc.healthy_threshold, hc.unhealthy_threshold);
                t.set_state(TargetState::Registered);
                start_checks(g, t);
            }
            None => {
                let t = Target::new(
                    name.to_owned(),
                    az.to_owned(),
                    addr,
                    g.board
                        .register(name, hc.healthy_threshold, hc.unhealthy_threshold),
                    m.outstanding
                        .get_or_create(&vec![("target", name.to_owned())])
                        .clone(),
                    m.weights
                        .get_or_create(&vec![
                            ("target_group", g.name.clone()),
                            ("target", name.to_owned()),
                        ])
                        .clone(),
                    m.anomalous
                        .get_or_create(&vec![
                            ("target_group", g.name.clone()),
                            ("target", name.to_owned()),
                        ])
                        .clone(),
                );
                m.target_healthy
                    .get_or_create(&vec![("target", name.to_owned()), ("az", az.to_owned())])
                    .set(0);
                let i = g.targets.push(t)?;
                start_checks(g, &g.targets[i]);
            }
        }
        Ok(())
    }

    /// Deregisters the target named `key` (or at address `key`) from every group it is
    /// registered in, and drains it in the background; its name. `/targets` says
    /// `draining` until the drain is over, then `unused`.
    pub fn deregister_target(&self, key: &str) -> Result<String, RegistrationError> {
        self.deregister_from(key, Scope::All)
    }

    /// [`Self::deregister_target`], from the groups `scope` says only: a blue/green
    /// deployment takes an instance out of the green twins once it serves in the groups.
    pub fn deregister_from(&self, key: &str, scope: Scope) -> Result<String, RegistrationError> {
        let mut name = None;
        let twin =
            |g: &crate::target::TargetGroup| self.groups().iter().all(|c| !std::ptr::eq(c, g));
        for g in self.all_groups() {
            let other = match scope {
                Scope::All => false,
                Scope::Groups => twin(g),
                Scope::Twins => !twin(g),
            };
            if other {
                continue;
            }
            for t in &g.targets {
                if t.in_service() && (t.name == key || t.addr.to_string() == key) {
                    t.set_state(TargetState::Draining);
                    name = Some(t.name.clone());
                }
            }
        }
        let name = name.ok_or_else(|| RegistrationError::Unknown(key.to_owned()))?;
        tracing::info!(lb = %self.name(), target = %name, "target deregistered; draining");
        let lb = self.clone();
        let target = name.clone();
        tokio::spawn(async move { lb.drain_target(&target).await });
        Ok(name)
    }

    /// Waits for the target's requests in flight (at most the deregistration delay) and
    /// closes its WebSockets, then takes it out of every group it was draining in.
    async fn drain_target(&self, name: &str) {
        let delay = self
            .all_groups()
            .filter(|g| g.index_of(name).is_some())
            .map(|g| g.config().deregistration_delay)
            .max()
            .unwrap_or_default();
        let in_flight = || -> i64 {
            self.all_groups()
                .filter_map(|g| g.index_of(name).map(|i| g.targets[i].outstanding()))
                .max()
                .unwrap_or(0)
        };
        let requests = async {
            let until = tokio::time::Instant::now() + delay;
            while in_flight() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        // Still registered in another group (a blue/green rollout took it out of a green
        // twin once it served from the group itself): the instance goes on serving, so its
        // requests and WebSockets are not the drain's to wait for or close.
        let serving_elsewhere = self
            .all_groups()
            .any(|g| g.index_of(name).is_some_and(|i| g.targets[i].in_service()));
        if !serving_elsewhere {
            tokio::join!(requests, self.drain_target_websockets(name));
        }
        for g in self.all_groups() {
            if let Some(t) = g.index_of(name).map(|i| &g.targets[i]) {
                if t.state() == TargetState::Draining {
                    if let Some(p) = t.probe.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        p.abort();
                    }
                    t.set_state(TargetState::Unused);
                }
            }
        }
        tracing::info!(lb = %self.name(), target = name, "target drained");
    }

    /// Ends every target's checks: the balancer is stopping.
    pub(crate) fn stop_health_checks(&self) {
        for g in self.all_groups() {
            for t in &g.targets {
                if let Some(p) = t.probe.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    p.abort();
                }
            }
        }
    }
}

fn start_checks(g: &crate::target::TargetGroup, t: &Target) {
    let probe = g
        .board
        .watch(&t.name, t.addr, g.config().health_check.clone());
    if let Some(old) = t
        .probe
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(probe)
    {
        old.abort();
    }
}
