//! The database tier (PostgreSQL) as the console shows it, read from the keepers' metrics
//! (the same scrape as every other node, so the picture stays a pure function of metric
//! text): each node's role now, its replication lag, commits per second and connections,
//! and the two conditions RDS users alarm on: a lagging replica and a primary writing
//! without a synchronous copy.

use crate::alarms::Observation;
use crate::reading::Reading;
use crate::target::Target;
use serde::Serialize;

/// A region's database nodes as their keepers report them.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DbView {
    /// The node of this region that takes writes now (None when the writer is elsewhere).
    pub primary: Option<String>,
    pub nodes: Vec<DbNodeView>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct DbNodeView {
    pub name: String,
    pub region: String,
    pub az: Option<String>,
    /// PostgreSQL answers its keeper.
    pub up: bool,
    /// `primary`, `sync_standby` or `replica`; None while it does not answer.
    pub role: Option<&'static str>,
    pub lag_bytes: Option<f64>,
    pub lag_seconds: Option<f64>,
    pub commits_per_second: Option<f64>,
    pub connections: Option<f64>,
    /// Primary: the standbys streaming from it, with their sync state.
    pub standbys: Vec<StandbyView>,
}

#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct StandbyView {
    pub name: String,
    /// sync, potential, quorum or async.
    pub sync_state: String,
}

impl DbNodeView {
    pub fn is_primary(&self) -> bool {
        self.role == Some("primary")
    }

    fn has_sync_standby(&self) -> bool {
        self.standbys.iter().any(|s| s.sync_state == "sync")
    }
}

/// Every database node of the deployment from its keeper's metrics, in target order.
/// Roles are what replication shows now, not what the config started with: a standby is
/// synchronous only while a primary lists it as `sync`.
pub(crate) fn db_nodes(targets: &[Target], readings: &[Option<Reading>]) -> Vec<DbNodeView> {
    let mut nodes: Vec<DbNodeView> = targets
        .iter()
        .zip(readings)
        .filter(|(t, _)| t.role == "db")
        .map(|(t, r)| node_of(t, r.as_ref()))
        .collect();
    let sync: Vec<String> = nodes
        .iter()
        .filter(|n| n.is_primary())
        .flat_map(|n| &n.standbys)
        .filter(|s| s.sync_state == "sync")
        .map(|s| s.name.clone())
        .collect();
    for n in &mut nodes {
        if n.role == Some("replica") && sync.contains(&n.name) {
            n.role = Some("sync_standby");
        }
    }
    nodes
}

fn node_of(t: &Target, r: Option<&Reading>) -> DbNodeView {
    let value = |name: &str| r?.all(name).next().map(|s| s.value);
    let up = value("meridian_db_up").is_some_and(|v| v >= 0.5);
    let role = match value("meridian_db_in_recovery") {
        Some(v) if up && v < 0.5 => Some("primary"),
        Some(_) if up => Some("replica"),
        _ => None,
    };
    let standbys = r
        .map(|r| {
            r.all("meridian_db_standbys")
                .filter(|s| s.value >= 0.5)
                .map(|s| StandbyView {
                    name: s.label("name").unwrap_or_default().to_owned(),
                    sync_state: s.label("sync_state").unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    DbNodeView {
        name: t.name.clone(),
        region: t.region.clone().unwrap_or_default(),
        az: t.az.clone(),
        up,
        role,
        lag_bytes: value("meridian_db_replication_lag_bytes"),
        lag_seconds: value("meridian_db_replication_lag_seconds"),
        commits_per_second: r.and_then(|r| r.rate("meridian_db_commits_total", |_| true)),
        connections: value("meridian_db_connections"),
        standbys,
    }
}

/// The region's share of `nodes`, or None when the region runs no database node.
pub(crate) fn db_of(nodes: &[DbNodeView], region: &str) -> Option<DbView> {
    let mine: Vec<DbNodeView> = nodes
        .iter()
        .filter(|n| n.region == region)
        .cloned()
        .collect();
    let primary = mine.iter().find(|n| n.is_primary()).map(|n| n.name.clone());
    (!mine.is_empty()).then_some(DbView {
        primary,
        nodes: mine,
    })
}

/// `replication_lag`: every answering standby or replica, breached above `threshold`
/// seconds.
pub(crate) fn lag_observations(nodes: &[DbNodeView], threshold: f64) -> Vec<Observation> {
    nodes
        .iter()
        .filter(|n| n.up && !n.is_primary())
        .map(|n| {
            let secs = n.lag_seconds.unwrap_or(0.0);
            Observation {
                subject: n.name.clone(),
                value: Some(secs),
                breached: secs > threshold,
                detail: format!(
                    "{} is {secs:.1}s and {} bytes behind its primary",
                    n.name,
                    n.lag_bytes.unwrap_or(0.0) as i64
                ),
            }
        })
        .collect()
}

/// `no_sync_standby`: every primary whose region has another database node, breached
/// while none of its standbys is synchronous (a region of one node cannot have one).
pub(crate) fn sync_observations(nodes: &[DbNodeView]) -> Vec<Observation> {
    nodes
        .iter()
        .filter(|p| p.is_primary())
        .filter(|p| {
            nodes
                .iter()
                .any(|n| n.region == p.region && n.name != p.name)
        })
        .map(|p| {
            let breached = !p.has_sync_standby();
            Observation {
                subject: p.name.clone(),
                value: Some(f64::from(u8::from(breached))),
                breached,
                detail: if breached {
                    format!(
                        "{} commits without a synchronous standby ({} streaming: {})",
                        p.name,
                        p.standbys.len(),
                        p.standbys
                            .iter()
                            .map(|s| format!("{} {}", s.name, s.sync_state))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    format!("{} has a synchronous standby", p.name)
                },
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::reading::Previous;
    use meridian_telemetry::exposition;

    fn target(name: &str, region: &str) -> Target {
        Target {
            name: name.into(),
            role: "db",
            region: Some(region.into()),
            az: Some(name.trim_start_matches("db-").into()),
            admin: "127.85.0.1:9900".parse().unwrap(),
        }
    }

    /// Also the model's database tests' scrape text.
    pub(crate) fn metrics(
        in_recovery: u8,
        lag_s: f64,
        commits: u64,
        standbys: &[(&str, &str)],
    ) -> String {
        let mut s = format!(
            "meridian_db_up 1\nmeridian_db_in_recovery {in_recovery}\n\
             meridian_db_replication_lag_bytes 4096\nmeridian_db_replication_lag_seconds {lag_s}\n\
             meridian_db_commits_total {commits}\nmeridian_db_connections 7\n"
        );
        for (name, sync) in standbys {
            s.push_str(&format!(
                "meridian_db_standbys{{name=\"{name}\",sync_state=\"{sync}\"}} 1\n"
            ));
        }
        s
    }

    fn read(prev: &mut Previous, text: &str, at: f64) -> Reading {
        prev.read(exposition::parse(text), at)
    }

    #[test]
    fn roles_lag_commits_and_connections() {
        let targets = [
            target("db-us-a", "us"),
            target("db-us-b", "us"),
            target("db-eu-a", "eu"),
        ];
        let mut prev: Vec<Previous> = targets.iter().map(|_| Previous::default()).collect();
        let primary = |c| metrics(0, 0.0, c, &[("db-us-b", "sync"), ("db-eu-a", "async")]);
        let first = vec![
            Some(read(&mut prev[0], &primary(100), 10.0)),
            Some(read(&mut prev[1], &metrics(1, 0.0, 0, &[]), 10.0)),
            Some(read(&mut prev[2], &metrics(1, 2.5, 0, &[]), 10.0)),
        ];
        let nodes = db_nodes(&targets, &first);
        let roles: Vec<_> = nodes.iter().map(|n| n.role).collect();
        assert_eq!(
            roles,
            [Some("primary"), Some("sync_standby"), Some("replica")]
        );
        assert_eq!(nodes[2].lag_seconds, Some(2.5));
        assert_eq!(nodes[2].lag_bytes, Some(4096.0));
        assert_eq!(nodes[0].connections, Some(7.0));
        let second = vec![
            Some(read(&mut prev[0], &primary(150), 12.0)),
            None,
            Some(read(&mut prev[2], &metrics(1, 2.5, 0, &[]), 12.0)),
        ];
        let nodes = db_nodes(&targets, &second);
        assert_eq!(nodes[0].commits_per_second, Some(25.0));
        assert!(!nodes[1].up);
        assert_eq!(nodes[1].role, None, "a silent node has no role to show");
        let us = db_of(&nodes, "us").unwrap();
        assert_eq!(us.primary.as_deref(), Some("db-us-a"));
        let eu = db_of(&nodes, "eu").unwrap();
        assert_eq!(eu.primary, None);
        assert!(db_of(&nodes, "ap").is_none());
    }

    #[test]
    fn alarms_on_lag_and_on_a_primary_without_a_sync_standby() {
        let targets = [
            target("db-us-a", "us"),
            target("db-us-b", "us"),
            target("db-eu-a", "eu"),
        ];
        let mut prev: Vec<Previous> = targets.iter().map(|_| Previous::default()).collect();
        let readings = vec![
            Some(read(
                &mut prev[0],
                &metrics(0, 0.0, 1, &[("db-us-b", "potential"), ("db-eu-a", "async")]),
                1.0,
            )),
            Some(read(&mut prev[1], &metrics(1, 0.2, 0, &[]), 1.0)),
            Some(read(&mut prev[2], &metrics(1, 45.0, 0, &[]), 1.0)),
        ];
        let nodes = db_nodes(&targets, &readings);
        let lag = lag_observations(&nodes, 30.0);
        assert_eq!(lag.len(), 2, "standbys and replicas, not the primary");
        assert!(!lag[0].breached);
        assert!(lag[1].breached && lag[1].subject == "db-eu-a");
        let sync = sync_observations(&nodes);
        assert_eq!(sync.len(), 1);
        assert!(sync[0].breached, "{}", sync[0].detail);
        assert!(sync[0].detail.contains("db-us-b potential"));
        // After a cross-region promotion the new primary has no other node in its
        // region: there is no synchronous standby to expect.
        let mut prev: Vec<Previous> = targets.iter().map(|_| Previous::default()).collect();
        let readings = vec![
            None,
            None,
            Some(read(&mut prev[2], &metrics(0, 0.0, 1, &[]), 1.0)),
        ];
        let nodes = db_nodes(&targets, &readings);
        assert!(sync_observations(&nodes).is_empty());
        // A healthy pair clears it.
        let readings = vec![
            Some(read(
                &mut prev[0],
                &metrics(0, 0.0, 1, &[("db-us-b", "sync")]),
                2.0,
            )),
            None,
            None,
        ];
        let nodes = db_nodes(&targets, &readings);
        let sync = sync_observations(&nodes);
        assert!(!sync[0].breached);
    }
}
