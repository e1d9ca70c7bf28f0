//! The role a node has now: it starts as configured and changes when the keeper promotes
//! it. Health checks, `/status` and the keeper all read this one cell.

use crate::DbRole;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct CurrentRole(Arc<AtomicU8>);

impl CurrentRole {
    pub fn new(role: DbRole) -> Self {
        CurrentRole(Arc::new(AtomicU8::new(role as u8)))
    }

    pub fn get(&self) -> DbRole {
        match self.0.load(Ordering::Acquire) {
            0 => DbRole::Primary,
            1 => DbRole::SyncStandby,
            _ => DbRole::Replica,
        }
    }

    pub fn set(&self, role: DbRole) {
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
            c.set(r);
            assert_eq!(c.get(), r);
        }
    }
}
