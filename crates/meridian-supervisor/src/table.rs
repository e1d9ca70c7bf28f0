//! The table `up` prints once every node is healthy: where each node is, and how to reach
//! the deployment.

use meridian_config::state::{DeploymentState, NodeState};
use meridian_config::{Config, Role};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Where people and clients reach a node: with WAN relays, the relay's public address.
pub(crate) fn print(cfg: &Config, state: &DeploymentState, state_dir: &Path, took: Duration) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nMeridian deployment `{}` (zone {}) is up: {} nodes healthy in {:.1}s\n\n",
        cfg.deployment.name,
        cfg.deployment.zone,
        state.nodes.len(),
        took.as_secs_f64()
    ));
    out.push_str(&format!(
        "{:<18} {:<8} {:<24} {:<18} {:<26} {:>7}  {}\n",
        "REGION", "ROLE", "NODE", "AZ", "ADDRESS", "PID", "VERSION"
    ));
    let primary = &cfg.primary_region().name;
    for region in &cfg.regions {
        let mut label = region.name.clone();
        if &region.name == primary {
            label.push_str(" *");
        }
        let mut nodes: Vec<&NodeState> = state
            .nodes
            .iter()
            .filter(|n| n.spec.region.as_deref() == Some(&region.name))
            .collect();
        nodes.sort_by_key(|n| (n.spec.role != Role::Lb, n.spec.name.clone()));
        for n in nodes {
            out.push_str(&format!(
                "{:<18} {:<8} {:<24} {:<18} {:<26} {:>7}  {}\n",
                label,
                n.spec.role.as_str(),
                n.spec.name,
                n.spec.az.as_deref().unwrap_or("-"),
                format!(
                    "{}://{}",
                    match n.spec.role {
                        Role::Db => "postgres",
                        Role::Cache => "redis",
                        _ => "http",
                    },
                    n.spec.address
                ),
                n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                // A service instance's version (`meridian rollout` changes it).
                n.version.as_deref().unwrap_or("-")
            ));
            label.clear();
        }
    }
    // Nodes outside the regions: PoPs, then the DNS.
    for (role, group, scheme) in [
        (Role::Edge, "edge", "http"),
        (Role::Wan, "global", "http"),
        (Role::Dns, "global", "dns"),
        (Role::Console, "global", "http"),
    ] {
        for n in state.nodes.iter().filter(|n| n.spec.role == role) {
            out.push_str(&format!(
                "{:<18} {:<8} {:<24} {:<18} {:<26} {:>7}\n",
                group,
                n.spec.role.as_str(),
                n.spec.name,
                "-",
                format!("{scheme}://{}", n.spec.address),
                n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
            ));
        }
    }
    if !state.client_locations.is_empty() {
        out.push_str("\nclient locations (send from the network to be seen there):\n");
        for c in &state.client_locations {
            out.push_str(&format!(
                "  {:<16} {:<18} {:>7.2}, {:>7.2}\n",
                c.name, c.source, c.lat, c.lon
            ));
        }
    }
    let dir = state_dir.display();
    let first_lb = state.nodes.iter().find(|n| n.spec.role == Role::Lb);
    out.push_str(&format!(
        "\n* primary region. Load balancer admin (/metrics, /health, /targets) on port {}.\n",
        cfg.network.admin_port
    ));
    out.push_str(&format!(
        "supervisor metrics: http://{}/metrics\n",
        state.supervisor_admin
    ));
    let cache_regions: Vec<String> =
        cfg.regions
            .iter()
            .filter(|r| {
                state.nodes.iter().any(|n| {
                    n.spec.role == Role::Cache && n.spec.region.as_deref() == Some(&r.name)
                })
            })
            .filter_map(|r| {
                Some(format!(
                    "{} redis://{}",
                    r.name,
                    cfg.cache_endpoint(&r.name)?
                ))
            })
            .collect();
    if !cache_regions.is_empty() {
        out.push_str(&format!(
            "cache primary endpoints (password in {dir}/{}): {}\n",
            meridian_redis::PASSWORD_FILE,
            cache_regions.join(", ")
        ));
    }
    if let Some(c) = state.nodes.iter().find(|n| n.spec.role == Role::Console) {
        out.push_str(&format!(
            "console (dashboards, alarms, cost): http://{}/\n",
            c.spec.address
        ));
    }
    out.push_str(&format!(
        "state: {dir}/endpoints.json   logs: {dir}/logs/\n\n"
    ));
    if let Some(lb) = first_lb {
        out.push_str(&format!(
            "try:  curl -i http://{}/api/quotes/AAPL\n",
            lb.spec.address
        ));
    }
    if let Some(dns) = state.nodes.iter().find(|n| n.spec.role == Role::Dns) {
        let from = state
            .client_locations
            .iter()
            .find(|c| c.name == "london")
            .or(state.client_locations.first());
        let bind = from
            .and_then(|c| c.source.split('/').next())
            .map(|net| format!(" -b {}", net.trim_end_matches(".0").to_owned() + ".1"))
            .unwrap_or_default();
        let public = dns.spec.address;
        out.push_str(&format!(
            "      dig @{} -p {}{bind} api.{} A\n",
            public.ip(),
            public.port(),
            cfg.deployment.zone
        ));
    }
    if let Some(e) = state.nodes.iter().find(|n| n.spec.role == Role::Edge) {
        out.push_str(&format!(
            "      curl -si http://{}/static/app.css -o /dev/null -D - | grep -i x-cache   # edge; HTTPS on :{}\n",
            e.spec.address, cfg.network.https_port
        ));
        out.push_str(&format!(
            "      meridian invalidate --state-dir {dir} --paths '/static/*'\n"
        ));
    }
    out.push_str(&format!("      meridian health --state-dir {dir}\n"));
    out.push_str("Press Ctrl-C to stop.\n");
    print!("{out}");
    let _ = std::io::stdout().flush();
}
