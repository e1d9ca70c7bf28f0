//! The targets of one group (generic, so this file names nothing of `target.rs`): a list that only grows while the balancer runs, so that a
//! target's index (what picks, retries and stickiness hold) never changes, and reading it
//! takes no lock. Deregistering a target changes its state, not the list; registering one
//! again (same name) reuses its entry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// ALB's quota of targets per target group.
pub const MAX_TARGETS: usize = 1000;

pub struct Targets<T> {
    slots: Box<[OnceLock<T>]>,
    /// Entries set so far: every slot below `len` is set.
    len: AtomicUsize,
    /// Serializes additions (reads never wait on it).
    adding: Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("the target group already has {MAX_TARGETS} targets (ALB's quota)")]
pub struct Full;

impl<T> Targets<T> {
    pub fn new(initial: Vec<T>) -> Self {
        let targets = Targets {
            slots: (0..MAX_TARGETS).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            adding: Mutex::new(()),
        };
        for t in initial {
            let _ = targets.push(t);
        }
        targets
    }

    /// Entries, registered or not.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        if i < self.len() {
            self.slots[i].get()
        } else {
            None
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        (0..self.len()).filter_map(|i| self.slots[i].get())
    }

    /// Adds `t` at the end; its index.
    pub(crate) fn push(&self, t: T) -> Result<usize, Full> {
        let _g = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let i = self.len.load(Ordering::Acquire);
        let slot = self.slots.get(i).ok_or(Full)?;
        let _ = slot.set(t);
        self.len.store(i + 1, Ordering::Release);
        Ok(i)
    }
}

impl<T> std::ops::Index<usize> for Targets<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(t) => t,
            None => panic!("no target {i} of {}", self.len()),
        }
    }
}

impl<'a, T> IntoIterator for &'a Targets<T> {
    type Item = &'a T;
    type IntoIter = Box<dyn Iterator<Item = &'a T> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}
