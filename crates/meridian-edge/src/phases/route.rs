//! Route: the behavior's origin group and cache policy, and whether the request may go
//! through the cache at all.

use super::context::RequestContext;
use crate::edge::Edge;
use crate::origin::Group;
use http::Method;
use meridian_config::{Behavior, CachePolicy, CustomErrorResponse, ResponseHeadersPolicy};
use std::sync::Arc;

/// Where a request goes: the origin group to ask and the cache policy to key and keep by.
pub(crate) struct Route<'a> {
    pub group: Arc<Group>,
    /// The members to try, in order, when a function chose them; None: the group's ranking.
    pub members: Option<Arc<[usize]>>,
    pub policy: &'a CachePolicy,
    /// GET or HEAD, and among the behavior's cached methods.
    pub cacheable: bool,
}

impl Edge {
    /// The route of a request; None when its behavior's origin group has no members.
    pub(super) fn route<'a>(&'a self, ctx: &RequestContext<'a>) -> Option<Route<'a>> {
        let b = ctx.behavior;
        let (group, policy) = self.route_behavior(b)?;
        let cacheable = is_cacheable(ctx);
        let (group, members) = match &ctx.origin {
            Some(choice) => (choice.group.clone(), choice.members.clone()),
            None => (group, None),
        };
        Some(Route {
            group,
            members,
            policy,
            cacheable,
        })
    }

    /// The origin group and cache policy of a behavior (the first policy when the named
    /// one is missing).
    pub(super) fn route_behavior(&self, b: &Behavior) -> Option<(Arc<Group>, &CachePolicy)> {
        let group = self.0.origins.group(&b.origin_group).cloned()?;
        let policy = self
            .0
            .dist
            .cache_policy(&b.cache_policy)
            .unwrap_or(&self.0.dist.cache_policies[0]);
        Some((group, policy))
    }

    /// The custom error response configured for an error status, if any.
    pub(super) fn custom_error_for(&self, status: u16) -> Option<&CustomErrorResponse> {
        self.0
            .dist
            .custom_error_responses
            .iter()
            .find(|c| c.error_code == status)
    }

    pub(super) fn headers_policy(&self, b: &Behavior) -> Option<&ResponseHeadersPolicy> {
        b.response_headers_policy
            .as_deref()
            .and_then(|n| self.0.dist.response_headers_policy(n))
    }
}

/// GET or HEAD, and among the behavior's cached methods: what the cache may answer. Known
/// before routing, since neither the method nor the behavior changes after the viewer phase.
pub(super) fn is_cacheable(ctx: &RequestContext<'_>) -> bool {
    (ctx.method == Method::GET || ctx.method == Method::HEAD)
        && ctx
            .behavior
            .cached_methods
            .iter()
            .any(|m| m == ctx.method.as_str())
}
