//! The regional load balancer: Meridian's ALB.
//!
//! One `lb` node per region sits in front of the region's service instances, in one or
//! more target groups that listener rules choose between (forward by weight, redirect,
//! fixed response). A group picks a target by round robin, least outstanding requests or
//! weighted random (stickiness, slow start and anomaly mitigation on top), checks targets
//! actively through the health engine and passively on live traffic, retries on another
//! target when that is safe, and drains in-flight requests on shutdown.
//! A running balancer takes a new `[load_balancer]` in place when it can (`live.rs`).

mod access_log;
mod admin;
mod anomaly;
mod forwarded;
mod grpc;
mod listener;
mod live;
mod options;
mod origin_access;
mod pool;
mod proxy;
mod registry;
mod retry;
mod rules;
mod settings;
mod sticky;
mod target;
mod targets;
mod trace;
mod twins;
mod twins_lb;
mod upgrade;

pub use listener::Clients;
pub use live::{ReloadError, Reloads};
pub use options::{cert_names, LbOptions};
pub use proxy::LoadBalancer;
pub use registry::Scope;
use std::time::Duration;
pub use sticky::{APP_COOKIE, LB_COOKIE};
pub use target::{Target, TargetGroup, TargetState};
pub use targets::{Targets, MAX_TARGETS};
pub use trace::HEADER as TRACE_HEADER;
pub use twins::{split, to_twin, TwinError, TWIN_SUFFIX};

/// WebSockets (`upgrade.rs`). Here, not in `upgrade.rs`, so that file names nothing of
/// `proxy.rs` (which names it: no import circle), and `proxy.rs` keeps only its hooks.
impl LoadBalancer {
    /// WebSocket tunnels open now, over every target.
    pub fn websocket_connections(&self) -> usize {
        self.websockets().live()
    }

    /// Drains one target's WebSocket tunnels as a deregistration does: after the
    /// deregistration delay, each still open gets a close frame (1001 "going away") and
    /// is cut. The caller stops sending the target new requests.
    pub async fn drain_target_websockets(&self, target: &str) {
        self.websockets().drain(Some(&[target])).await
    }

    /// Drains every tunnel: the balancer is stopping.
    pub async fn drain_websockets(&self) {
        self.websockets().drain(None).await
    }
}

/// The longest deregistration delay of any target group now.
fn drain_time(lb: &LoadBalancer) -> Duration {
    lb.groups()
        .iter()
        .map(|g| g.config().deregistration_delay)
        .max()
        .unwrap_or(lb.config().deregistration_delay)
}

/// Resolves at the drain's deadline, once the balancer has been told to stop (never if
/// it is not: the listener then ends on its own).
async fn drained(mut deadline: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>) {
    // Copied out at once: the watch's guard must not be held across a wait.
    let at = deadline
        .wait_for(|d| d.is_some())
        .await
        .ok()
        .and_then(|d| *d);
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs a load balancer until `shutdown` resolves, then drains for the deregistration delay.
/// Without an admin token: targets cannot be registered or deregistered at run time.
pub async fn run(
    opts: LbOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), meridian_http::BindError> {
    run_with_token(opts, None, shutdown).await
}

/// [`run`], with the admin token that `POST /targets/register` and `/targets/deregister`
/// need.
pub async fn run_with_token(
    opts: LbOptions,
    token: Option<meridian_http::secrets::AdminToken>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), meridian_http::BindError> {
    run_reloading(opts, token, None, shutdown).await
}

/// What a balancer that reloads its config needs: the digest of the file it starts from
/// and the channel new configs come on (`live.rs`).
pub struct Reloading {
    pub digest: String,
    pub reloads: Reloads,
}

/// [`run_with_token`], taking new configs from `reloading` in place as they come.
pub async fn run_reloading(
    opts: LbOptions,
    token: Option<meridian_http::secrets::AdminToken>,
    reloading: Option<Reloading>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), meridian_http::BindError> {
    let listener = meridian_http::bind(opts.listen).await?;
    let tls_listener = match &opts.tls {
        Some((addr, config)) => Some((meridian_http::bind(*addr).await?, config.clone())),
        None => None,
    };
    let admin_listener = meridian_http::bind(opts.admin).await?;
    let lb = LoadBalancer::new(&opts);
    let checks = lb.start_health_checks(&opts);
    let reloader = reloading.map(|Reloading { digest, mut reloads }| {
        lb.set_config_digest(&digest);
        let (lb, region) = (lb.clone(), opts.region.clone());
        tokio::spawn(async move {
            while let Some((cfg, digest)) = reloads.recv().await {
                if let Err(e) = lb.reload_config(&cfg, &region, &digest) {
                    tracing::error!(lb = %lb.name(), "reload refused, keeping the current config: {e}");
                }
            }
        })
    });
    tracing::info!(name = %opts.name, listen = %opts.listen, admin = %opts.admin, targets = opts.targets.len(), "load balancer listening");
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin::serve(admin_listener, lb.clone(), token, async {
        let _ = admin_stopped.await;
    }));
    // Draining lasts as long as the longest deregistration delay of any target group when
    // the balancer stops (a reload may have changed it): the listeners are given a bound
    // far above any delay, and the deadline below, read at the stop, cuts what is left.
    let server_opts = meridian_http::ServerOptions {
        drain: Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    let (stopping, deadline) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    // Both listeners stop together: the TLS one is told when the plain one's shutdown came.
    let (stop_tls, tls_stopped) = tokio::sync::watch::channel(false);
    let tls_task = tls_listener.map(|(l, config)| {
        let proxy = lb.clone();
        let server_opts = server_opts.clone();
        let mut stopped = tls_stopped.clone();
        tokio::spawn(meridian_http::serve_handlers(
            l,
            server_opts,
            Some(meridian_http::tls::acceptor(config)),
            move |peer: meridian_http::Peer| proxy.clients_tls(&peer),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    });
    let proxy = lb.clone();
    // Upgraded connections outlive the listener's drain: WebSockets are drained alongside.
    let (ws_drain, ws_drained) = tokio::sync::oneshot::channel();
    let ws_lb = lb.clone();
    let drain_lb = lb.clone();
    let serve = meridian_http::serve_handlers(
        listener,
        server_opts,
        None,
        move |peer: meridian_http::Peer| proxy.clients(&peer),
        async move {
            shutdown.await;
            let _ = ws_drain.send(tokio::spawn(async move { ws_lb.drain_websockets().await }));
            let _ = stop_tls.send(true);
            let _ = stopping.send(Some(tokio::time::Instant::now() + drain_time(&drain_lb)));
        },
    );
    tokio::select! {
        _ = serve => {}
        _ = drained(deadline.clone()) => {
            tracing::warn!("drain time over; closing remaining connections");
        }
    }
    if let Some(mut t) = tls_task {
        // Aborting the listener's task drops its connections.
        tokio::select! {
            _ = &mut t => {}
            _ = drained(deadline) => t.abort(),
        }
    }
    if let Ok(ws) = ws_drained.await {
        let _ = ws.await;
    }
    for c in checks {
        c.abort();
    }
    if let Some(r) = reloader {
        r.abort();
    }
    lb.stop_health_checks();
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    tracing::info!(name = %opts.name, "load balancer stopped");
    Ok(())
}
