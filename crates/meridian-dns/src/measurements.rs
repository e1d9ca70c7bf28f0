//! Round trips measured by the PoPs, fed to latency routing.
//!
//! Every PoP probes every region's balancer (its origin health checks) and keeps a round
//! trip per region. A client location is best described by the PoP nearest to it (the one
//! its viewers reach), so the DNS takes that PoP's round trip to each region as the client
//! location's. Measured values beat the configured `[[dns.latency]]` table, which beats the
//! prior. A PoP that stops answering for three polls hands its client locations back to
//! those fallbacks, so a dead PoP's last numbers do not steer clients for ever (the
//! polling is in `measurement_feed.rs`).

use meridian_config::Config;
use std::collections::HashMap;
use std::net::SocketAddr;

/// One PoP to ask, and the client locations its numbers stand for.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementSource {
    pub pop: String,
    /// Its admin endpoint (`GET /origins`, with the admin token).
    pub admin: SocketAddr,
    /// Client locations that have this PoP as their nearest.
    pub clients: Vec<String>,
}

/// For each PoP, the client locations nearest to it by great-circle distance (geography,
/// not a latency model). PoPs nearest to no client location are left out.
pub fn sources(cfg: &Config) -> Vec<MeasurementSource> {
    let mut out: Vec<MeasurementSource> = Vec::new();
    let pop_nodes = cfg
        .nodes()
        .into_iter()
        .filter(|n| n.role == meridian_config::Role::Edge);
    let admins: HashMap<String, SocketAddr> = pop_nodes
        .filter_map(|n| Some((cfg.pop_of(&n)?.name.clone(), n.admin)))
        .collect();
    for c in &cfg.client_locations {
        let nearest = cfg.edges.iter().min_by(|a, b| {
            let (da, db) = (
                a.location.distance_km(&c.location),
                b.location.distance_km(&c.location),
            );
            da.total_cmp(&db)
        });
        let Some(pop) = nearest else { continue };
        let Some(admin) = admins.get(&pop.name) else {
            continue;
        };
        match out.iter_mut().find(|s| s.pop == pop.name) {
            Some(s) => s.clients.push(c.name.clone()),
            None => out.push(MeasurementSource {
                pop: pop.name.clone(),
                admin: *admin,
                clients: vec![c.name.clone()],
            }),
        }
    }
    out
}

/// A PoP's view of its origin groups, as `GET /origins` gives it.
#[derive(serde::Deserialize)]
struct Origins {
    origin_groups: Vec<OriginGroupView>,
}

#[derive(serde::Deserialize)]
struct OriginGroupView {
    members: Vec<MemberView>,
}

#[derive(serde::Deserialize)]
struct MemberView {
    origin: String,
    measured_rtt_ms: f64,
    /// The measured round trip, never below the PoP's prior: on one machine without WAN
    /// relays every region measures near zero, and the prior keeps its order.
    ranked_rtt_ms: f64,
}

/// The PoP's round trip to each region: the lowest over its groups (a region's balancer is
/// the same place whichever group names it). Members not measured yet (0) are left out.
pub(crate) fn per_region(body: &[u8]) -> Result<HashMap<String, f64>, serde_json::Error> {
    let origins: Origins = serde_json::from_slice(body)?;
    let mut out: HashMap<String, f64> = HashMap::new();
    for m in origins.origin_groups.iter().flat_map(|g| &g.members) {
        let Some(region) = m.origin.strip_prefix("lb:") else {
            continue;
        };
        if !(m.measured_rtt_ms > 0.0 && m.ranked_rtt_ms.is_finite()) {
            continue;
        }
        let e = out.entry(region.to_owned()).or_insert(f64::INFINITY);
        *e = e.min(m.ranked_rtt_ms.max(m.measured_rtt_ms));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pops_view_becomes_one_round_trip_per_region() {
        let body = br#"{"pop":"p","origin_groups":[
            {"group":"a","members":[
                {"origin":"lb:us-east-1","measured_rtt_ms":12.5,"ranked_rtt_ms":12.5},
                {"origin":"lb:eu-west-1","measured_rtt_ms":0.0,"ranked_rtt_ms":70.0},
                {"origin":"http://127.0.0.1:9","measured_rtt_ms":1.0,"ranked_rtt_ms":1.0}]},
            {"group":"b","members":[{"origin":"lb:us-east-1","measured_rtt_ms":0.4,"ranked_rtt_ms":9.0}]}]}"#;
        let got = per_region(body).unwrap();
        assert_eq!(
            got.get("us-east-1"),
            Some(&9.0),
            "the lower of two groups, as ranked"
        );
        assert!(!got.contains_key("eu-west-1"), "not measured yet");
        assert_eq!(got.len(), 1, "plain addresses are no region: {got:?}");
    }
}
