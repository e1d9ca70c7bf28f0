//! How a demo origin is configured.
//!
//! A leaf module, so the shared handler state in `app` can hold the options without
//! depending on the crate root.

use crate::quote_cache::QuoteCacheOptions;
use crate::store::DatabaseOptions;
use std::time::Duration;

/// Who this instance is; echoed on every response.
#[derive(Debug, Clone)]
pub struct Identity {
    pub region: String,
    pub az: String,
    pub instance: String,
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub identity: Identity,
    /// Artificial work per API and GraphQL request, modelling a real application.
    pub processing_time: Duration,
    /// Where orders and portfolios are kept; None: those endpoints answer 503.
    pub database: Option<DatabaseOptions>,
    /// The region's Redis, read through for quotes; None: quotes are made on every request.
    /// A field of its own, apart from `database`: the two tiers fail independently.
    pub quote_cache: Option<QuoteCacheOptions>,
}

/// The version of the application an instance runs (ECS's task definition revision):
/// reported in `x-service-version` on every response and in `/health`, so a rollout can be
/// watched from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceVersion(pub String);

impl Default for ServiceVersion {
    fn default() -> Self {
        ServiceVersion("1".to_owned())
    }
}

impl ServiceVersion {
    /// A test aid, on purpose and documented: a version whose name ends in `-broken`
    /// answers 503 on `/health` (and serves everything else), so a rollout to it must be
    /// rolled back by the circuit breaker.
    pub fn fails_health_checks(&self) -> bool {
        self.0.ends_with("-broken")
    }

    /// The other test aid: a version whose name ends in `-5xx` passes its health checks
    /// but answers 500 to every `/api/` request, so a rollout to it must be rolled back on
    /// the region's 5xx rate.
    pub fn fails_requests(&self) -> bool {
        self.0.ends_with("-5xx")
    }
}
