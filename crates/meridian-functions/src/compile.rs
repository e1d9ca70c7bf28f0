//! [`FunctionCode::compile`]: validation at deployment. Kept apart from `code` because it
//! builds a probe [`Engine`], and the engine itself holds a `FunctionCode`.

use crate::code::FunctionCode;
use crate::engine::{Engine, EngineOptions};
use crate::error::CompileError;
use crate::kvs::KeyValueStore;
use crate::limits::{Kind, Limits};

impl FunctionCode {
    /// Validate `source` as a function of `kind`.
    ///
    /// Errors: [`CompileError::TooLarge`] (10 KB for viewer functions, 1 MB for origin
    /// hooks), [`CompileError::Syntax`] with 1-based line and column, [`CompileError::Init`]
    /// when top-level code throws or the entry point is missing.
    pub fn compile(name: &str, source: &str, kind: Kind) -> Result<FunctionCode, CompileError> {
        let limit = Limits::for_kind(kind).max_code_bytes;
        if source.len() > limit {
            return Err(CompileError::TooLarge {
                name: name.to_string(),
                kind,
                size: source.len(),
                limit,
            });
        }
        let code = FunctionCode::lowered(name, source, kind);
        // Build a probe engine: parses, runs top-level code, checks the entry point. A
        // placeholder store lets top-level `cf.kvs()` succeed before the real one is bound.
        let mut opts = EngineOptions::for_kind(kind);
        opts.kvs = Some(KeyValueStore::new("compile-probe"));
        opts.limits.cpu_budget = opts
            .limits
            .cpu_budget
            .max(std::time::Duration::from_millis(200));
        Engine::build_checked(&code, &opts)?;
        Ok(code)
    }
}
