//! `[database]`: the data tier in the words of RDS. One writer region holds the primary and,
//! Multi-AZ, a synchronous standby in another of its AZs; every other region listed holds
//! an asynchronous read replica. Each instance is a node `db-<az>` of its own.

use crate::error::Diagnostics;
use crate::read::Table;
use crate::units::ByteSize;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    /// The writer region (RDS's primary Region): its primary takes every write.
    pub home_region: String,
    /// The AZ of the primary: the home region's first.
    pub primary_az: String,
    /// The AZ of the synchronous standby (Multi-AZ); None for a single-AZ writer.
    pub standby_az: Option<String>,
    /// One asynchronous replica per region listed, in that region's first AZ.
    pub replicas: Vec<DbReplica>,
    /// Whether a replica in another region is promoted on its own when the home region is
    /// lost; inside the home region promotion is always automatic.
    pub promotion: Promotion,
    /// How long a primary's leadership lasts without renewal.
    #[serde(with = "crate::serde_duration")]
    pub lease: Duration,
    /// The most replication lag a replica may have and still be promoted.
    pub max_promotion_lag: ByteSize,
    /// The port PostgreSQL listens on at every database node's address.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbReplica {
    pub region: String,
    pub az: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Promotion {
    Automatic,
    Manual,
}

/// What a database instance is in its replication group (the role it starts in, and the
/// one a keeper reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbRole {
    /// The writer.
    Primary,
    /// A standby the primary waits for on commit (in another AZ of the home region).
    SyncStandby,
    /// An asynchronous standby (another region's reader).
    Replica,
}

impl DbRole {
    /// Whether PostgreSQL in this role runs in recovery (streams from an upstream).
    pub fn in_recovery(self) -> bool {
        !matches!(self, DbRole::Primary)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DbRole::Primary => "primary",
            DbRole::SyncStandby => "synchronous standby",
            DbRole::Replica => "replica",
        }
    }
}

impl Database {
    /// Every database instance: (region, AZ, role), the primary first.
    pub fn instances(&self) -> Vec<(String, String, DbRole)> {
        let mut out = vec![(
            self.home_region.clone(),
            self.primary_az.clone(),
            DbRole::Primary,
        )];
        if let Some(az) = &self.standby_az {
            out.push((self.home_region.clone(), az.clone(), DbRole::SyncStandby));
        }
        for r in &self.replicas {
            out.push((r.region.clone(), r.az.clone(), DbRole::Replica));
        }
        out
    }
}

/// Node name of the database instance in `az`.
pub fn db_node_name(az: &str) -> String {
    format!("db-{az}")
}

pub(crate) fn read_database(
    t: &Table,
    d: &mut Diagnostics,
    regions: &[crate::region::Region],
) -> Option<Database> {
    let names: Vec<&str> = regions.iter().map(|r| r.name.as_str()).collect();
    let region_named =
        |d: &mut Diagnostics, key: &'static str, value: &str| -> Option<crate::region::Region> {
            let found = regions.iter().find(|r| r.name == value).cloned();
            if found.is_none() {
                if let Some(f) = t.get(key) {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{value}` names no region"),
                        format!("use one of: {}", names.join(", ")),
                    );
                }
            }
            found
        };
    let primary = regions.iter().find(|r| r.primary).or(regions.first())?;
    let home = match t.str(d, "home_region") {
        Some(h) => region_named(d, "home_region", &h)?,
        None => primary.clone(),
    };
    let primary_az = home.azs.first().cloned()?;
    let multi_az = t.bool(d, "multi_az").unwrap_or(true);
    let mut ok = true;
    let standby_az = match (multi_az, t.str(d, "standby_az")) {
        (false, _) => None,
        (true, Some(az)) => {
            let f = t.get("standby_az");
            if !home.azs.contains(&az) {
                if let Some(f) = f {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{az}` is not an AZ of {}", home.name),
                        format!("use one of: {}", home.azs[1..].join(", ")),
                    );
                }
                ok = false;
            } else if az == primary_az {
                if let Some(f) = f {
                    d.error(
                        f.span,
                        &f.key,
                        format!("`{az}` is the primary's own AZ"),
                        "a Multi-AZ standby must be in another AZ of the home region",
                    );
                }
                ok = false;
            }
            Some(az)
        }
        (true, None) => match home.azs.get(1) {
            Some(az) => Some(az.clone()),
            None => {
                let (span, key) = t
                    .get("multi_az")
                    .map(|f| (f.span, f.key))
                    .unwrap_or((t.span.clone(), t.path.clone()));
                d.error(
                    span,
                    &key,
                    format!(
                        "Multi-AZ needs a second AZ in {}, which has only {}",
                        home.name, primary_az
                    ),
                    format!(
                        "add an AZ to the region `{}`, or set multi_az = false",
                        home.name
                    ),
                );
                ok = false;
                None
            }
        },
    };
    let replica_regions: Vec<String> = match t.str_list(d, "replica_regions") {
        Some(list) => list.into_iter().map(|s| s.into_inner()).collect(),
        None => regions
            .iter()
            .filter(|r| r.name != home.name)
            .map(|r| r.name.clone())
            .collect(),
    };
    let mut replicas = Vec::new();
    for name in &replica_regions {
        let Some(region) = region_named(d, "replica_regions", name) else {
            ok = false;
            continue;
        };
        if region.name == home.name {
            if let Some(f) = t.get("replica_regions") {
                d.error(
                    f.span,
                    &f.key,
                    format!("`{name}` is the home region"),
                    "list only other regions: the home region has the primary and its standby",
                );
            }
            ok = false;
            continue;
        }
        match region.azs.first() {
            Some(az) => replicas.push(DbReplica {
                region: region.name.clone(),
                az: az.clone(),
            }),
            None => {
                if let Some(f) = t.get("replica_regions") {
                    d.error(
                        f.span,
                        &f.key,
                        format!("the region `{name}` has no AZ to hold a replica"),
                        format!("add azs = [\"{name}a\"] to the region"),
                    );
                }
                ok = false;
            }
        }
    }
    let promotion = match t.choice(d, "promotion", &["automatic", "manual"]) {
        Some("manual") => Promotion::Manual,
        _ => Promotion::Automatic,
    };
    let lease = t.duration(d, "lease").unwrap_or(Duration::from_secs(10));
    if !(Duration::from_secs(2)..=Duration::from_secs(60)).contains(&lease) {
        if let Some(f) = t.get("lease") {
            d.error(
                f.span,
                &f.key,
                "the lease must be between 2s and 60s",
                "write lease = \"10s\"",
            );
        }
        ok = false;
    }
    let max_promotion_lag = t.size(d, "max_promotion_lag").unwrap_or(ByteSize(16 << 20));
    let port = t.int(d, "port", 1..=65_535).unwrap_or(5432) as u16;
    t.finish(d);
    ok.then_some(Database {
        home_region: home.name.clone(),
        primary_az,
        standby_az,
        replicas,
        promotion,
        lease,
        max_promotion_lag,
        port,
    })
}
