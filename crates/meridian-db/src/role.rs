//! The role a node has now: it starts as configured and changes when the keeper promotes
//! it or it rejoins. Health checks, `/status` and the keeper all read this one cell, and
//! `/status` lists the last changes with their causes.

use meridian_config::DbRole;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// How many role changes `/status` keeps.
const KEPT: usize = 16;

/// One role change and why it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleChange {
    /// Unix time in milliseconds.
    pub at_unix_ms: u64,
    pub role: DbRole,
    pub cause: String,
}

#[derive(Clone)]
pub(crate) struct CurrentRole(Arc<AtomicU8>, Arc<Mutex<Vec<RoleChange>>>);

impl CurrentRole {
    pub fn new(role: DbRole) -> Self {
        CurrentRole(Arc::new(AtomicU8::new(role as u8)), Arc::default())
    }

    /// Changes the role and records why (the callers log it with the node's name).
    pub fn change(&self, role: DbRole, cause: impl Into<String>) {
        let cause = cause.into();
        self.set(role);
        let at_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut kept = self.1.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.remove(0);
        }
        kept.push(RoleChange {
            at_unix_ms,
            role,
            cause,
        });
    }

    /// The last role changes, oldest first.
    pub fn changes(&self) -> Vec<RoleChange> {
        self.1.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self) -> DbRole {
        match self.0.load(Ordering::Acquire) {
            0 => DbRole::Primary,
            1 => DbRole::SyncStandby,
            _ => DbRole::Replica,
        }
    }

    fn set(&self, role: DbRole) {
        self.0.store(role as u8, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips() {
        for r in [DbRole::Primary, DbRole::SyncStandby, DbRole::Replica] {
            let c = CurrentRole::new(DbRole::Replica);
            c.change(r, "a test");
            assert_eq!(c.get(), r);
            assert_eq!(
                c.changes().last().map(|c| (c.role, c.cause.as_str())),
                Some((r, "a test"))
            );
        }
    }
}
