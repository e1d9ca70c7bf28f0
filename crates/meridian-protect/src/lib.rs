//! API protection at the edge: the decisions a PoP makes about a viewer request before it
//! is routed or served, in AWS WAF's and CloudFront's terms. Everything here is pure logic
//! over a request's parts; the edge calls it from its viewer-request phase, so the crate
//! knows nothing of sockets, caches or origins.

pub mod dev_key;
pub mod idempotency;
pub mod jwt;
pub mod rate;
pub mod rules;
pub mod signed_url;
