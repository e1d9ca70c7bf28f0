//! HTTP cache semantics for a shared cache (RFC 9111), the rules Meridian's edge stores,
//! serves and revalidates by, with CloudFront's minimum, default and maximum TTLs on top.
//!
//! The edge's storage and request collapsing sit on these pure functions; keeping the
//! rules here, without I/O, lets every one of them be tested in isolation.

mod directives;
mod freshness;
mod range;
mod targeted;
mod validation;
mod vary;

pub use directives::CacheControl;
pub use freshness::{
    current_age, edge_ttl, freshness_lifetime, heuristically_cacheable, initial_age, storable,
    NotStorable, Stored, TtlPolicy, Usability,
};
pub use range::{byte_range, ByteRange};
pub use targeted::{is_dictionary, targeted_headers};
pub use validation::{conditional_request, invalidation_targets, merge_not_modified, not_modified};
pub use vary::{add_vary, variant_suffix, vary_key, vary_names, VaryKey};

#[cfg(test)]
mod test_support;
