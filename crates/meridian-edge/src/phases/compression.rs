//! Compression: the coding a viewer gets, and compressed variants of stored objects, made
//! once and stored beside the identity body (the edge stores identity and compresses per
//! viewer, as CloudFront does).

use super::context::RequestContext;
use crate::compress;
use crate::edge::Edge;
use crate::key::{self, Coding};
use crate::store::{Object, ObjectBody};
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use meridian_cache::add_vary;
use std::sync::Arc;

impl Edge {
    /// The coding a viewer gets for a response: the one it prefers when the behavior
    /// compresses, the response may be transformed, is a compressible 200 without a coding
    /// of its own, and its length (when known) is within the distribution's limits; else
    /// identity. One rule for serving stored objects and for deciding whether a miss can
    /// stream its identity body to the first viewer.
    pub(super) fn coding_for(
        &self,
        compress: bool,
        viewer: &HeaderMap,
        status: u16,
        headers: &HeaderMap,
        no_transform: bool,
        len: Option<u64>,
    ) -> Coding {
        let dist = &self.0.dist;
        let eligible = compress
            && status == 200
            && !no_transform
            && !headers.contains_key(header::CONTENT_ENCODING)
            && compress::compressible(headers)
            && len.is_none_or(|n| (dist.compress_min_size..=dist.compress_max_size).contains(&n));
        if eligible {
            key::negotiate(viewer)
        } else {
            Coding::Identity
        }
    }

    /// The body a viewer gets of a stored object: its compressed variant when the viewer
    /// accepts one (with `headers` saying so: Content-Encoding, a weak ETag, Vary).
    pub(super) async fn encode_for_viewer(
        &self,
        ctx: &RequestContext<'_>,
        obj: &Object,
        status: StatusCode,
        headers: &mut HeaderMap,
    ) -> ObjectBody {
        let mut body = obj.body.clone();
        // Only a behavior that compresses asks (the type check is most of a hit's cost
        // here when it does not).
        let compressible = ctx.behavior.compress && compress::compressible(headers);
        let coding = self.coding_for(
            ctx.behavior.compress,
            &ctx.headers,
            status.as_u16(),
            headers,
            obj.meta.cache_control.no_transform,
            Some(obj.body.len()),
        );
        if coding != Coding::Identity {
            if let Some(z) = self.compressed(obj, coding).await {
                body = z;
                headers.insert(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_static(coding.token()),
                );
                if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
                    if !etag.starts_with("W/") {
                        if let Ok(v) = HeaderValue::from_str(&format!("W/{etag}")) {
                            headers.insert(header::ETAG, v);
                        }
                    }
                }
            }
        }
        if compressible {
            add_vary(headers, "Accept-Encoding");
        }
        body
    }

    /// The `coding` variant of a stored object's body, made and stored on first use.
    async fn compressed(&self, obj: &Object, coding: Coding) -> Option<ObjectBody> {
        let vkey = key::variant_key(&obj.key, &format!("{}#{}", coding.token(), obj.body_id));
        if let Some(v) = self.0.store.get(&vkey) {
            return Some(v.body.clone());
        }
        // Making a variant is boxed: the encoders' state is kilobytes, and inline it would
        // make every request's future that large (moved into its box per request).
        let identity = match &obj.body {
            ObjectBody::Memory(b) => b.clone(),
            ObjectBody::Disk { file, owner, len } => {
                Box::pin(self.0.store.read_disk(file, owner, *len))
                    .await
                    .ok()?
            }
        };
        let z = Box::pin(compress::encode(coding, &identity)).await.ok()?;
        if z.len() >= identity.len() {
            return None;
        }
        let variant = Object {
            key: vkey,
            path: obj.path.clone(),
            meta: obj.meta.clone(),
            body: ObjectBody::Memory(z),
            vary: None,
            body_id: obj.body_id,
        };
        let body = variant.body.clone();
        self.0.store.put(Arc::new(variant));
        Some(body)
    }
}
