//! What one viewer request carries through the phases, and what the phases hand back.

use super::outcome::Outcome;
use crate::origin::OriginName;
use http::{HeaderMap, Method, Response};
use meridian_config::Behavior;
use meridian_http::{Body, Peer};

/// The viewer request made canonical once (host, path), with the behavior it routes to:
/// every phase after the viewer request reads only this, so no phase can see another
/// spelling of the request than the one routed and keyed.
pub(crate) struct RequestContext<'a> {
    pub peer: Peer,
    pub method: Method,
    pub host: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub version: http::Version,
    pub request_id: String,
    pub behavior: &'a Behavior,
    /// The origin a viewer-request function chose (`selectRequestOriginById`,
    /// `createRequestOriginGroup`); None: the behavior's origin group.
    pub origin: Option<OriginChoice>,
    /// The edge that sent this request when it comes from another cache of the tier (a
    /// PoP to a regional cache): the viewer phases ran there and are not run again.
    pub tier: Option<String>,
}

/// An origin group, and optionally which of its members to try, in order.
#[derive(Clone)]
pub(crate) struct OriginChoice {
    pub group: std::sync::Arc<crate::origin::Group>,
    pub members: Option<std::sync::Arc<[usize]>>,
}

impl RequestContext<'_> {
    /// Where an origin's 103 Early Hints go: the viewer, for a page navigation on a
    /// connection that takes interim responses (`meridian_http::interim`).
    pub fn hints(&self) -> Option<meridian_http::interim::Interim> {
        self.peer.interim.as_ref()?.for_navigation(&self.headers)
    }

    /// The path with the query parameters `filter` admits, in the viewer's order.
    pub fn path_and_query(&self, filter: impl Fn(&str) -> bool) -> String {
        let mut out = self.path.clone();
        if let Some(q) = &self.query {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|p| !p.is_empty() && filter(p.split('=').next().unwrap_or("")))
                .collect();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
        }
        out
    }
}

/// A request's answer, how it was answered, and the origin member that answered when one
/// did (None: the edge answered alone, from its cache or with its own error).
pub(crate) struct Served {
    pub response: Response<Body>,
    pub outcome: Outcome,
    pub origin: Option<OriginName>,
}

impl Served {
    /// Answered by the edge alone.
    pub fn at_edge(response: Response<Body>, outcome: Outcome) -> Served {
        Served {
            response,
            outcome,
            origin: None,
        }
    }

    /// Answered with what `origin` sent.
    pub fn from_origin(response: Response<Body>, outcome: Outcome, origin: OriginName) -> Served {
        Served {
            response,
            outcome,
            origin: Some(origin),
        }
    }
}
