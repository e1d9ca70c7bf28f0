//! The DNS names of the database endpoints, as Route 53 records point at RDS endpoints:
//! `db-writer.<zone>` leads to a writer endpoint (any database node's relay to the
//! current leader) and `db-reader.<zone>` to a region's own PostgreSQL. Both are latency
//! record sets over the database nodes, health-checked on each node's keeper, so a client
//! gets the nearest region whose database node is healthy. They are derived from
//! `[database]` so that they follow the topology without being written by hand.

use crate::database::{Database, DbRole};
use crate::dns::{empty_answer, AliasTarget, Dns, Policy, RecordKind, RecordSet};
use crate::region::Region;
use std::time::Duration;

/// The record set leading to the writer endpoints.
pub const DB_WRITER_RECORD: &str = "db-writer";
/// The record set leading to the regions' readers.
pub const DB_READER_RECORD: &str = "db-reader";

/// RDS's endpoint TTL: short, because the answer moves with failover and health.
const DB_RECORD_TTL: Duration = Duration::from_secs(5);

/// Adds `db-writer` and `db-reader` unless `[dns]` already defines a record set of that
/// name (what the user wrote wins; `validate` shows which is which).
pub(crate) fn add_db_records(dns: &mut Dns, db: &Database, regions: &[Region]) {
    let instances = db.instances();
    // The writer's relay is the same on every node; the configured primary comes first
    // only so that its own region prefers it while it is healthy.
    let writer: Vec<(String, String)> = instances
        .iter()
        .map(|(region, az, _)| (region.clone(), az.clone()))
        .collect();
    // Reads go to the home region's standby before its primary, which carries the writes.
    let mut reader: Vec<(String, String)> = instances
        .iter()
        .filter(|(_, _, role)| *role != DbRole::Primary)
        .map(|(region, az, _)| (region.clone(), az.clone()))
        .collect();
    reader.extend(
        instances
            .iter()
            .filter(|(_, _, role)| *role == DbRole::Primary)
            .map(|(region, az, _)| (region.clone(), az.clone())),
    );
    let ttl = dns.default_ttl.min(DB_RECORD_TTL);
    for (name, nodes, alias) in [
        (
            DB_WRITER_RECORD,
            writer,
            AliasTarget::DbWriter as fn(String) -> AliasTarget,
        ),
        (DB_READER_RECORD, reader, AliasTarget::DbReader),
    ] {
        if dns.records.iter().any(|r| r.name == name) {
            continue;
        }
        let answers = nodes
            .into_iter()
            .map(|(region, az)| {
                let mut a = empty_answer(&crate::database::db_node_name(&az));
                a.location = regions
                    .iter()
                    .find(|r| r.name == region)
                    .map(|r| r.location);
                a.region = Some(region);
                a.alias = Some(alias(az));
                a.evaluate_target_health = true;
                a
            })
            .collect();
        dns.records.push(RecordSet {
            name: name.to_owned(),
            kind: RecordKind::A,
            ttl,
            policy: Policy::Latency,
            answers,
            generated: true,
        });
    }
}
