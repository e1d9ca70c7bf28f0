//! How a request was answered: the one value the response headers, the metrics and the
//! access log all describe.

/// How a request was answered, in CloudFront's result types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    /// Served stale while a refresh runs in the background.
    StaleWhileRevalidate,
    /// Served stale because the origin failed.
    StaleIfError,
    /// Revalidated with the origin (304) and served from the cache.
    RefreshHit,
    /// Fetched from the origin and stored.
    Miss,
    /// Fetched from the origin and not stored (method, private, no-store, ...).
    Pass,
    /// The edge answered with an error.
    Error,
    /// Sent to HTTPS.
    Redirect,
    /// A CORS preflight answered at the edge.
    Preflight,
    /// The viewer-request function answered (CloudFront's FunctionGeneratedResponse).
    FunctionGenerated,
    /// An edge function threw, returned something invalid or ran out of memory: 503.
    FunctionExecutionError,
    /// An edge function used up its CPU budget: 503.
    FunctionThrottled,
    /// Refused by API protection (a rule, a rate limit, geo restriction, authentication).
    Blocked,
    /// An idempotent request's duplicate, answered with the first one's stored response.
    Replay,
}

impl Outcome {
    pub const ALL: [Outcome; 14] = [
        Outcome::Hit,
        Outcome::StaleWhileRevalidate,
        Outcome::StaleIfError,
        Outcome::RefreshHit,
        Outcome::Miss,
        Outcome::Pass,
        Outcome::Error,
        Outcome::Redirect,
        Outcome::Preflight,
        Outcome::FunctionGenerated,
        Outcome::FunctionExecutionError,
        Outcome::FunctionThrottled,
        Outcome::Blocked,
        Outcome::Replay,
    ];

    pub fn x_cache(self) -> &'static str {
        match self {
            Outcome::Hit
            | Outcome::StaleWhileRevalidate
            | Outcome::StaleIfError
            | Outcome::Preflight => "Hit from meridian",
            Outcome::RefreshHit => "RefreshHit from meridian",
            Outcome::Miss | Outcome::Pass => "Miss from meridian",
            Outcome::Error => "Error from meridian",
            Outcome::Redirect => "Redirect from meridian",
            Outcome::FunctionGenerated => "FunctionGeneratedResponse from meridian",
            Outcome::FunctionExecutionError => "FunctionExecutionError from meridian",
            Outcome::FunctionThrottled => "FunctionThrottledError from meridian",
            Outcome::Blocked => "Error from meridian",
            Outcome::Replay => "Hit from meridian",
        }
    }
    /// `x-edge-result-type` of the access log.
    pub fn result_type(self) -> &'static str {
        match self {
            Outcome::Hit
            | Outcome::StaleWhileRevalidate
            | Outcome::StaleIfError
            | Outcome::Preflight => "Hit",
            Outcome::RefreshHit => "RefreshHit",
            Outcome::Miss | Outcome::Pass => "Miss",
            Outcome::Error => "Error",
            Outcome::Redirect => "Redirect",
            Outcome::FunctionGenerated => "FunctionGeneratedResponse",
            Outcome::FunctionExecutionError => "FunctionExecutionError",
            Outcome::FunctionThrottled => "FunctionThrottledError",
            Outcome::Blocked => "Error",
            Outcome::Replay => "Hit",
        }
    }
    /// The label of `meridian_edge_requests_total{cache_status}` and the detailed type.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::StaleWhileRevalidate => "stale_while_revalidate",
            Outcome::StaleIfError => "stale_if_error",
            Outcome::RefreshHit => "refresh_hit",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
            Outcome::Redirect => "redirect",
            Outcome::Preflight => "preflight",
            Outcome::FunctionGenerated => "function_generated",
            Outcome::FunctionExecutionError => "function_execution_error",
            Outcome::FunctionThrottled => "function_throttled",
            Outcome::Blocked => "blocked",
            Outcome::Replay => "replay",
        }
    }
    /// The `Cache-Status` (RFC 9211) parameters.
    pub(crate) fn cache_status(self) -> &'static str {
        match self {
            Outcome::Hit | Outcome::Preflight => "hit",
            Outcome::StaleWhileRevalidate => "hit; detail=stale-while-revalidate",
            Outcome::StaleIfError => "hit; detail=stale-if-error",
            Outcome::RefreshHit => "fwd=stale; fwd-status=304; stored",
            Outcome::Miss => "fwd=miss; stored",
            Outcome::Pass => "fwd=uri-miss",
            Outcome::Error => "fwd=miss; detail=origin-error",
            Outcome::Redirect => "detail=redirect",
            Outcome::FunctionGenerated => "detail=function-generated",
            Outcome::FunctionExecutionError | Outcome::FunctionThrottled => "detail=function-error",
            Outcome::Blocked => "detail=blocked",
            Outcome::Replay => "hit; detail=idempotent-replay",
        }
    }
}
