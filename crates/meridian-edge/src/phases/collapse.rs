//! Collapse: a miss joins the fill already running for its key, or leads a new one.

use super::cache::Lookup;
use super::context::RequestContext;
use super::fill::FillRequest;
use super::inflight::{FillResult, MissResult};
use super::route::Route;
use crate::edge::Edge;
use crate::origin::Group;
use crate::store::Object;
use http::{header, Method};
use std::sync::Arc;

impl Edge {
    /// One origin fetch per key at a time: the first miss leads, later ones wait for its
    /// result. The leader of a fetch whose answer is not for sharing gets the origin's
    /// response itself.
    pub(super) async fn collapse(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        primary: &str,
        request_cc: &meridian_cache::CacheControl,
        stale: Option<Arc<Object>>,
    ) -> MissResult {
        let inflight = &self.0.inflight;
        if let Some(joined) = inflight.join(primary) {
            self.0.stats.collapsed.inc();
            return MissResult::Shared(joined.result().await);
        }
        // A second look, as a cache lock takes one: a fill stores its object before it
        // leaves the in-flight table, so one that ended since this request's lookup has
        // left a fresh object, and fetching again would be a second origin request.
        if stale.is_none() {
            if let Lookup::Fresh(object) = self.look_up(ctx, primary, request_cc, route.policy) {
                return MissResult::Cached(object);
            }
        }
        let mut req = self.fill_request(ctx, route, primary, stale);
        // The leader may get the body as it arrives when it wants it whole and as stored:
        // a plain GET with no range or validators (compression is decided in the fill).
        req.stream = ctx.method == Method::GET
            && req.stale.is_none()
            && ![
                header::RANGE,
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
            ]
            .iter()
            .any(|h| ctx.headers.contains_key(h));
        req.compress = ctx.behavior.compress;
        match self.lead_fill(route.group.clone(), req).await {
            Some(got) => got,
            // Another request started the same fetch a moment ago: wait for it.
            None => match inflight.join(primary) {
                Some(joined) => MissResult::Shared(joined.result().await),
                None => MissResult::Shared(FillResult::Pass),
            },
        }
    }

    /// A stale-while-revalidate refresh: a fill no viewer waits for.
    pub(super) fn refresh_in_background(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        primary: &str,
        stale: Arc<Object>,
    ) {
        if self.0.inflight.contains(primary) {
            return;
        }
        let req = self.fill_request(ctx, route, primary, Some(stale));
        let edge = self.clone();
        let group = route.group.clone();
        tokio::spawn(async move {
            let _ = edge.lead_fill(group, req).await;
        });
    }

    /// Leads the fill of `req` (None when another leader got there first).
    async fn lead_fill(&self, group: Arc<Group>, req: FillRequest) -> Option<MissResult> {
        let edge = self.clone();
        let key = req.key.clone();
        self.0
            .inflight
            .lead(key, move |leader, waiters| async move {
                edge.fill(&group, req, leader, waiters).await
            })
            .await
    }

    fn fill_request(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        primary: &str,
        stale: Option<Arc<Object>>,
    ) -> FillRequest {
        FillRequest {
            key: primary.to_owned(),
            path: ctx.path.clone(),
            path_and_query: self.origin_path(ctx, route.policy),
            headers: self.origin_headers(ctx, route.policy, true),
            viewer_headers: ctx.headers.clone(),
            authenticated: ctx.behavior.jwt_authorizer.is_some(),
            policy: route.policy.clone(),
            stale,
            stream: false,
            compress: false,
            hooks: self.origin_hooks(ctx),
            members: route.members.clone(),
            interim: ctx.hints(),
        }
    }
}
