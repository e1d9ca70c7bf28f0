//! `cloudfront` module: key value store handles and origin-modification helpers.
//!
//! KVS reads are synchronous in-memory look-ups wrapped in already-settled promises: the API
//! is async (as CloudFront's) but nothing ever waits, so an invocation needs no event loop.
//! Origin changes are recorded, not applied: the edge reads them from the invocation result.

use serde::Serialize;

pub(crate) const JS: &str = include_str!("cloudfront.js");

/// An origin change requested through the `cloudfront` module during a viewer-request.
///
/// Parameters are kept as JSON in CloudFront's shape (for example `{domainName, originPath,
/// customHeaders, timeouts, originAccessControlConfig, ...}`) so the edge can validate the
/// subset it supports without this crate guessing.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "method", content = "params")]
pub enum OriginChange {
    /// `cf.updateRequestOrigin(params)`.
    #[serde(rename = "updateRequestOrigin")]
    Update(serde_json::Value),
    /// `cf.selectRequestOriginById(originId)`.
    #[serde(rename = "selectRequestOriginById")]
    SelectById(String),
    /// `cf.createRequestOriginGroup(params)`.
    #[serde(rename = "createRequestOriginGroup")]
    CreateGroup(serde_json::Value),
}

impl OriginChange {
    pub(crate) fn from_js(method: &str, json: &str) -> Option<OriginChange> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        Some(match method {
            "update" => OriginChange::Update(v),
            "select" => OriginChange::SelectById(v.as_str()?.to_string()),
            "group" => OriginChange::CreateGroup(v),
            _ => return None,
        })
    }
}
