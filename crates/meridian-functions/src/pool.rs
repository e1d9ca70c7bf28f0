//! A pool of engines for one function, shareable across tokio tasks.
//!
//! `Engine` is `Send` but not `Sync`, and building one costs far more than an invocation, so
//! tasks borrow an idle engine, invoke it synchronously, and hand it back on drop. The pool
//! grows to the number of concurrent borrowers (about the number of worker threads) and keeps
//! at most `max_idle` engines.

use crate::builtins::lock;
use crate::code::FunctionCode;
use crate::engine::{Engine, EngineOptions};
use crate::error::CompileError;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Engines for one function. `Send + Sync`: put it in an `Arc` and share it.
#[derive(Debug)]
pub struct EnginePool {
    code: FunctionCode,
    opts: EngineOptions,
    idle: Mutex<Vec<Engine>>,
    max_idle: usize,
}

impl EnginePool {
    /// A pool with one engine built up front (so a broken function fails here, not on the
    /// first request).
    pub fn new(
        code: FunctionCode,
        opts: EngineOptions,
        max_idle: usize,
    ) -> Result<EnginePool, CompileError> {
        let first = Engine::new(&code, opts.clone())?;
        Ok(EnginePool {
            code,
            opts,
            idle: Mutex::new(vec![first]),
            max_idle: max_idle.max(1),
        })
    }

    /// Borrow an idle engine, or build a new one when all are busy.
    pub fn get(&self) -> Result<PooledEngine<'_>, CompileError> {
        let idle = lock(&self.idle).pop();
        let engine = match idle {
            Some(e) => e,
            None => Engine::new(&self.code, self.opts.clone())?,
        };
        Ok(PooledEngine {
            pool: self,
            engine: Some(engine),
        })
    }

    /// Engines currently idle.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    /// The function the pool runs.
    pub fn code(&self) -> &FunctionCode {
        &self.code
    }
}

/// An engine on loan from an [`EnginePool`]; goes back to the pool when dropped.
#[derive(Debug)]
pub struct PooledEngine<'a> {
    pool: &'a EnginePool,
    engine: Option<Engine>,
}

impl Deref for PooledEngine<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        // Always Some until drop.
        self.engine
            .as_ref()
            .unwrap_or_else(|| unreachable!("engine taken before drop"))
    }
}

impl DerefMut for PooledEngine<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.engine
            .as_mut()
            .unwrap_or_else(|| unreachable!("engine taken before drop"))
    }
}

impl Drop for PooledEngine<'_> {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            let mut idle = lock(&self.pool.idle);
            if idle.len() < self.pool.max_idle {
                idle.push(e);
            }
        }
    }
}
