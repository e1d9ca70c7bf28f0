//! What a viewer's request becomes on its way to an origin group.

use http::{HeaderMap, Method};
use meridian_http::grpc::RequestBody;
use meridian_http::interim::Interim;

/// One request for a group: what [`super::Origins::send`] sends to whichever member answers.
pub struct Outbound<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: RequestBody,
    /// The viewer's way to interim heads: every member's 103 Early Hints go there.
    pub interim: Option<Interim>,
}
