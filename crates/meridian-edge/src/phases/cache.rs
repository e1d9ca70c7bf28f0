//! Cache lookup: the stored object for a request and whether it may be served as is,
//! served stale, or must be fetched again.

use super::context::RequestContext;
use crate::edge::Edge;
use crate::key;
use crate::store::Object;
use http::HeaderMap;
use meridian_cache::{CacheControl, Usability};
use meridian_config::CachePolicy;
use std::sync::Arc;

/// What the cache holds for a request.
pub(super) enum Lookup {
    Fresh(Arc<Object>),
    /// Stale, but may be served while a refresh runs.
    StaleWhileRevalidate(Arc<Object>),
    /// Stale: revalidate; `serve_on_error` when it may stand in for a failing origin.
    Stale {
        object: Arc<Object>,
        serve_on_error: bool,
    },
    Miss,
}

impl Edge {
    /// The primary cache key: what the cache policy says identifies the object.
    pub(super) fn cache_key(&self, ctx: &RequestContext<'_>, policy: &CachePolicy) -> String {
        key::cache_key(
            policy,
            &ctx.host,
            &ctx.path,
            ctx.query.as_deref(),
            &ctx.headers,
        )
    }

    /// The stored object for `primary` judged against the request's cache directives now.
    pub(super) fn look_up(
        &self,
        ctx: &RequestContext<'_>,
        primary: &str,
        request_cc: &CacheControl,
        policy: &CachePolicy,
    ) -> Lookup {
        let now = self.0.clock.now();
        let Some(object) = self.stored(primary, &ctx.headers) else {
            return Lookup::Miss;
        };
        match object
            .meta
            .usability(request_cc, now, policy.stale_if_error)
        {
            Usability::Fresh { .. } => Lookup::Fresh(object),
            Usability::StaleWhileRevalidate { .. } => Lookup::StaleWhileRevalidate(object),
            Usability::Stale { serve_on_error, .. } => Lookup::Stale {
                object,
                serve_on_error,
            },
        }
    }

    /// The stored object for a request, following a Vary marker to the variant.
    pub(super) fn stored(&self, primary: &str, req_headers: &HeaderMap) -> Option<Arc<Object>> {
        let obj = self.0.store.get(primary)?;
        match &obj.vary {
            None => Some(obj),
            Some(names) => {
                let suffix = meridian_cache::variant_suffix(names, req_headers);
                self.0.store.get(&key::variant_key(primary, &suffix))
            }
        }
    }
}
