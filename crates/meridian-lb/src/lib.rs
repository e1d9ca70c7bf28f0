//! The regional load balancer: Meridian's ALB.
//!
//! One `lb` node per region sits in front of the region's service instances (its target
//! group). It picks a target by round robin or least outstanding requests, checks targets
//! actively through the health engine and passively on live traffic, retries on another
//! target when that is safe, and drains in-flight requests on shutdown.

mod admin;
mod proxy;
mod target;

pub use proxy::LoadBalancer;
pub use target::{Target, TargetGroup};

use meridian_config::NodeSpec;
use std::net::SocketAddr;

/// Everything one load balancer node needs to run.
#[derive(Debug, Clone)]
pub struct LbOptions {
    pub name: String,
    pub region: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub targets: Vec<NodeSpec>,
    pub config: meridian_config::LoadBalancer,
    /// The deployment's edge signing keys: with `require_edge_signature`, every request but
    /// the unsigned paths' must carry a valid signature.
    pub signer: Option<std::sync::Arc<meridian_http::signing::Signer>>,
}

impl LbOptions {
    /// The options for the load balancer node `name` of a deployment.
    pub fn from_config(cfg: &meridian_config::Config, node: &NodeSpec) -> Self {
        let region = node.region.clone().unwrap_or_default();
        LbOptions {
            name: node.name.clone(),
            targets: cfg.targets_of(&region),
            region,
            listen: node.address,
            admin: node.admin,
            config: cfg.load_balancer.clone(),
            signer: None,
        }
    }
}

/// Runs a load balancer until `shutdown` resolves, then drains for the deregistration delay.
pub async fn run(
    opts: LbOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), meridian_http::BindError> {
    let listener = meridian_http::bind(opts.listen).await?;
    let admin_listener = meridian_http::bind(opts.admin).await?;
    let lb = LoadBalancer::new(&opts);
    let checks = lb.start_health_checks(&opts);
    tracing::info!(name = %opts.name, listen = %opts.listen, admin = %opts.admin, targets = opts.targets.len(), "load balancer listening");
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin::serve(admin_listener, lb.clone(), async {
        let _ = admin_stopped.await;
    }));
    let server_opts = meridian_http::ServerOptions {
        drain: opts.config.deregistration_delay,
        ..Default::default()
    };
    let proxy = lb.clone();
    meridian_http::serve(
        listener,
        server_opts,
        move |peer| proxy.service(peer),
        shutdown,
    )
    .await;
    for c in checks {
        c.abort();
    }
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    tracing::info!(name = %opts.name, "load balancer stopped");
    Ok(())
}
