//! The regional load balancer: Meridian's ALB.
//!
//! One `lb` node per region sits in front of the region's service instances (its target
//! group). It picks a target by round robin or least outstanding requests, checks targets
//! actively through the health engine and passively on live traffic, retries on another
//! target when that is safe, and drains in-flight requests on shutdown.

mod admin;
mod proxy;
mod retry;
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
    /// A second listener that serves TLS (end-to-end encryption from the edge), and its
    /// certificate.
    pub tls: Option<(SocketAddr, std::sync::Arc<rustls::ServerConfig>)>,
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
            tls: None,
        }
    }

    /// Adds the TLS listener of a deployment: on the balancer's TLS port, with the
    /// certificate the deployment CA of `state_dir` signed for this region (made now when
    /// this node runs without `up`).
    pub fn with_deployment_tls(
        mut self,
        cfg: &meridian_config::Config,
        state_dir: &std::path::Path,
    ) -> Result<Self, meridian_http::tls::TlsError> {
        let names = cert_names(cfg, &self.region);
        let (cert, key) = meridian_http::pki::ensure_lb_cert(state_dir, &self.region, &names)?;
        let config = meridian_http::tls::server_config(&[meridian_http::tls::CertFiles {
            names,
            cert,
            key,
        }])?;
        // The placement says where; a balancer the config does not place serves no TLS.
        if let Some(addr) = cfg.node(&self.name).and_then(|n| cfg.tls_listen(&n)) {
            self.tls = Some((addr, config));
        }
        Ok(self)
    }
}

/// The names a balancer's certificate holds: its address (what an edge dials) and its
/// server name (what an edge verifies when it reaches the balancer through a relay).
pub fn cert_names(cfg: &meridian_config::Config, region: &str) -> Vec<String> {
    cfg.node(&format!("lb-{region}"))
        .map(|n| n.address.ip().to_string())
        .into_iter()
        .chain([cfg.lb_server_name(region)])
        .collect()
}

/// Runs a load balancer until `shutdown` resolves, then drains for the deregistration delay.
pub async fn run(
    opts: LbOptions,
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
    tracing::info!(name = %opts.name, listen = %opts.listen, admin = %opts.admin, targets = opts.targets.len(), "load balancer listening");
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin::serve(admin_listener, lb.clone(), async {
        let _ = admin_stopped.await;
    }));
    let server_opts = meridian_http::ServerOptions {
        drain: opts.config.deregistration_delay,
        ..Default::default()
    };
    // Both listeners stop together: the TLS one is told when the plain one's shutdown came.
    let (stop_tls, tls_stopped) = tokio::sync::watch::channel(false);
    let tls_task = tls_listener.map(|(l, config)| {
        let proxy = lb.clone();
        let server_opts = server_opts.clone();
        let mut stopped = tls_stopped.clone();
        tokio::spawn(meridian_http::serve_conns(
            l,
            server_opts,
            Some(meridian_http::tls::acceptor(config)),
            move |peer: meridian_http::Peer| proxy.service_tls(peer.addr, peer.local.port()),
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ))
    });
    let proxy = lb.clone();
    meridian_http::serve(
        listener,
        server_opts,
        move |peer| proxy.service(peer),
        async move {
            shutdown.await;
            let _ = stop_tls.send(true);
        },
    )
    .await;
    if let Some(t) = tls_task {
        let _ = t.await;
    }
    for c in checks {
        c.abort();
    }
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    tracing::info!(name = %opts.name, "load balancer stopped");
    Ok(())
}
