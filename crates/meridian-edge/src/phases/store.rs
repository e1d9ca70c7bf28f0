//! Store: what a fill keeps, under which key, and for how long (RFC 9111 with
//! CloudFront's TTL rules; the rules themselves live in `meridian-cache`).

use super::fill::{Exchange, FillRequest};
use crate::edge::Edge;
use crate::key;
use crate::store::{storable_headers, Object, ObjectBody};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::Method;
use meridian_cache::{
    edge_ttl, initial_age, merge_not_modified, storable, targeted_headers, variant_suffix,
    CacheControl, NotStorable, Stored, TtlPolicy,
};
use meridian_config::CachePolicy;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

impl Edge {
    /// How long the edge may keep this response, or None when it must not be shared.
    pub(super) fn store_ttl(
        &self,
        req: &FillRequest,
        status: u16,
        headers: &HeaderMap,
        received_at: SystemTime,
    ) -> Option<Duration> {
        let policy = &req.policy;
        // A targeted field (CDN-Cache-Control) speaks to the edge instead of Cache-Control.
        let targeted = targeted_headers(headers, &self.0.cache_control_targets);
        let headers = targeted.as_ref().unwrap_or(headers);
        if req.authenticated {
            // As RFC 9111 §3.5 treats Authorization: a per-user answer is shared only when
            // the origin says it may be, however the token arrived.
            let cc = CacheControl::from_headers(headers);
            if !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate) {
                return None;
            }
        }
        let verdict = storable(&Method::GET, &req.viewer_headers, status, headers);
        let custom = self.custom_error_for(status);
        match verdict {
            Ok(()) if status >= 400 && !explicit_freshness(headers) => {
                // Errors without freshness are kept for the error caching TTL.
                let t = custom
                    .map(|c| c.error_caching_min_ttl)
                    .unwrap_or(Duration::from_secs(10));
                (!t.is_zero()).then_some(t)
            }
            Ok(()) => edge_ttl(headers, ttl_policy(policy), received_at),
            // CloudFront keeps even private and no-store responses when the policy's
            // minimum TTL is above zero.
            Err(NotStorable::Private | NotStorable::NoStore)
                if status < 400 && !policy.min_ttl.is_zero() =>
            {
                edge_ttl(headers, ttl_policy(policy), received_at)
            }
            Err(NotStorable::NoFreshness) if status >= 400 => custom
                .map(|c| c.error_caching_min_ttl)
                .filter(|t| !t.is_zero()),
            _ => None,
        }
    }

    /// A stale object revalidated by a 304: its body with the 304's headers, stored again.
    pub(super) fn store_refreshed(
        &self,
        policy: &CachePolicy,
        stale: &Object,
        not_modified: &HeaderMap,
        at: Exchange,
    ) -> Arc<Object> {
        let mut h = stale.meta.headers.clone();
        merge_not_modified(&mut h, not_modified);
        let meta = self.meta(policy, stale.meta.status, h, at);
        let refreshed = Arc::new(Object {
            meta,
            ..stale.clone()
        });
        self.0.store.put(refreshed.clone());
        refreshed
    }

    /// An origin's error answer kept for `ttl` (the custom error response's caching TTL).
    pub(super) fn store_error(
        &self,
        req: &FillRequest,
        status: u16,
        headers: &HeaderMap,
        body: Bytes,
        ttl: Duration,
        at: Exchange,
    ) -> Arc<Object> {
        let mut meta = self.meta(&req.policy, status, storable_headers(headers), at);
        meta.ttl = ttl;
        let obj = Arc::new(Object {
            key: req.key.clone(),
            path: req.path.clone(),
            meta,
            body: ObjectBody::Memory(body),
            vary: None,
            body_id: self.0.body_ids.fetch_add(1, Ordering::Relaxed),
        });
        self.0.store.put(obj.clone());
        obj
    }

    /// A response read whole, stored for `ttl`: under the primary key, or, when it varies
    /// (`vary` names the selecting headers), as a variant behind a marker at the primary
    /// key that says which request headers select it.
    pub(super) fn store_object(
        &self,
        req: &FillRequest,
        head: &http::response::Parts,
        body: Bytes,
        ttl: Duration,
        vary: Option<Vec<String>>,
        at: Exchange,
    ) -> Arc<Object> {
        let status = head.status.as_u16();
        let mut meta = self.meta(&req.policy, status, storable_headers(&head.headers), at);
        meta.ttl = ttl;
        let body_id = self.0.body_ids.fetch_add(1, Ordering::Relaxed);
        let obj_key = match &vary {
            Some(names) if !names.is_empty() => {
                let names: Vec<HeaderName> = names
                    .iter()
                    .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                    .collect();
                let suffix = variant_suffix(&names, &req.viewer_headers);
                let marker = Object {
                    key: req.key.clone(),
                    path: req.path.clone(),
                    meta: meta.clone(),
                    body: ObjectBody::Memory(Bytes::new()),
                    vary: Some(names),
                    body_id,
                };
                self.0.store.put(Arc::new(marker));
                key::variant_key(&req.key, &suffix)
            }
            _ => req.key.clone(),
        };
        let obj = Arc::new(Object {
            key: obj_key,
            path: req.path.clone(),
            meta,
            body: ObjectBody::Memory(body),
            vary: None,
            body_id,
        });
        self.0.store.put(obj.clone());
        obj
    }

    /// What the store keeps about a response. Its headers are kept as the origin sent them
    /// (targeted fields included, so a 304 can refresh them); its caching rules come from
    /// the targeted field when there is a valid one.
    fn meta(&self, policy: &CachePolicy, status: u16, headers: HeaderMap, at: Exchange) -> Stored {
        let targeted = targeted_headers(&headers, &self.0.cache_control_targets);
        let rules = targeted.as_ref().unwrap_or(&headers);
        let ttl = edge_ttl(rules, ttl_policy(policy), at.received_at).unwrap_or(Duration::ZERO);
        let age = initial_age(&headers, at.sent_at, at.received_at);
        let cache_control = targeted.as_ref().map(CacheControl::from_headers);
        let mut stored = Stored::new(status, headers, age, at.received_at, ttl);
        if let Some(cc) = cache_control {
            stored.cache_control = cc;
        }
        stored
    }
}

fn ttl_policy(p: &CachePolicy) -> TtlPolicy {
    TtlPolicy {
        min: p.min_ttl,
        default: p.default_ttl,
        max: p.max_ttl,
    }
}

fn explicit_freshness(h: &HeaderMap) -> bool {
    let cc = CacheControl::from_headers(h);
    cc.max_age.is_some()
        || cc.s_maxage.is_some()
        || cc.max_age_invalid
        || h.contains_key(header::EXPIRES)
}
