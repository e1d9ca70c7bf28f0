//! The data tier as a CloudNativePG `Cluster` (postgresql.cnpg.io/v1) in the home region:
//! the operator runs what Meridian's keepers run on hosts (a primary, a synchronous
//! standby in another zone when `multi_az`, failover, the `-rw` and `-ro` Services that
//! are RDS's writer and reader endpoints). The replica regions are left out: a CNPG
//! replica cluster streams from an object store or a reachable primary, which is the
//! user's infrastructure to name.

use super::labels::{dns_label, Labels};
use meridian_config::Database;
use serde_json::{json, Value};

/// The name of the Cluster of `db` (its operator names the Services `<name>-rw`, `-ro`).
pub(crate) fn name(l: &Labels, db: &Database) -> String {
    dns_label(&format!("{}-db-{}", l.deployment, db.home_region))
}

/// The Cluster of `db`.
pub(crate) fn cluster(l: &Labels, db: &Database) -> Value {
    let standby = db.standby_az.is_some();
    let mut spec = json!({
        "instances": if standby { 2 } else { 1 },
        "primaryUpdateStrategy": "unsupervised",
        "bootstrap": { "initdb": { "database": "app", "owner": "app" } },
        "storage": { "size": "10Gi" },
        "resources": { "requests": { "cpu": "250m", "memory": "512Mi" } },
        "monitoring": { "enablePodMonitor": false },
        // Instances spread over zones, as the config's primary and standby AZs are.
        "affinity": { "topologyKey": "topology.kubernetes.io/zone" },
    });
    if standby {
        // Multi-AZ: a commit waits for the standby, so a failover loses no acknowledged write.
        spec["minSyncReplicas"] = 1.into();
        spec["maxSyncReplicas"] = 1.into();
    }
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": l.meta(&name(l, db), json!({
            "app.kubernetes.io/name": "meridian",
            "app.kubernetes.io/instance": l.deployment,
            "meridian.dev/role": "db",
            "meridian.dev/region": dns_label(&db.home_region),
        })),
        "spec": spec,
    })
}
