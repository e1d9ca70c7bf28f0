//! How a load balancer node is configured, and the names its certificate holds.
//!
//! A leaf module, so the proxy can read the options without depending on the crate root
//! that runs it.

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
    /// Where ALB's access log goes (`with_access_log`); None writes none.
    pub access_log: Option<std::path::PathBuf>,
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
            access_log: None,
        }
    }

    /// Puts ALB's access log at `<state_dir>/logs/access-lb-<region>.log` (beside the
    /// PoPs' `access-<pop>.log`) when `[load_balancer] access_log` is on.
    pub fn with_access_log(mut self, state_dir: &std::path::Path) -> Self {
        self.access_log = self.config.access_log.then(|| {
            state_dir
                .join("logs")
                .join(format!("access-lb-{}.log", self.region))
        });
        self
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
        if let Some(addr) = cfg.node(&self.name).and_then(|n| cfg.tls_address(&n)) {
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
