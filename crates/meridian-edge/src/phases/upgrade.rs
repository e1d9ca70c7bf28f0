//! WebSockets through the PoP, as CloudFront carries them: a viewer's handshake, once past
//! protection and the viewer-request function, goes to the behavior's origin group like a
//! pass (the first member that takes it, in rank order), and a 101 joins the viewer to that
//! member ([`meridian_http::upgrade`]). Never cached and never collapsed: every handshake
//! is its own origin connection.

use super::context::{RequestContext, Served};
use super::error::generated_error;
use super::origin_functions::OriginCall;
use super::outcome::Outcome;
use super::route::Route;
use crate::edge::Edge;
use crate::origin::Outbound;
use bytes::Bytes;
use http::Method;
use meridian_http::upgrade::{switch, TunnelOptions, WsUpgrade};
use std::time::Duration;

/// A tunnel with no byte either way for this long is closed: CloudFront's WebSocket idle
/// timeout. Longer than any origin's response timeout, which is about a response head.
pub(crate) const WEBSOCKET_IDLE: Duration = Duration::from_secs(600);

impl Edge {
    /// Forwards a viewer's WebSocket handshake and, on the origin's 101, tunnels.
    pub(super) async fn tunnel(
        &self,
        ctx: &RequestContext<'_>,
        route: &Route<'_>,
        ws: WsUpgrade,
    ) -> Served {
        let mut headers = self.origin_headers(ctx, route.policy, false);
        let mut path = self.origin_path(ctx, route.policy);
        // The origin-request function sees the handshake as it sees a pass.
        let hooks = self.origin_hooks(ctx);
        match self
            .origin_request_hook(
                &hooks,
                OriginCall::new(&Method::GET, &mut path, &mut headers),
            )
            .await
        {
            Ok(None) => {}
            Ok(Some(generated)) => return Served::at_edge(generated, Outcome::Pass),
            Err(e) => return Served::at_edge(e.to_response(), Outcome::Error),
        }
        // After the policies and the function: the key the origin's accept is made from
        // and the upgrade itself must reach it whatever the header policy says.
        ws.restore(&mut headers);
        self.0.stats.origin_fetches.inc();
        let group = &route.group;
        let sent = self
            .0
            .origins
            .send(
                group,
                route.members.as_deref(),
                Outbound {
                    method: &Method::GET,
                    path_and_query: &path,
                    headers: &headers,
                    body: Bytes::new().into(),
                    interim: None,
                },
            )
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(failure) => {
                let e = generated_error(&self.0.pop, &failure);
                return Served::at_edge(e.to_response(), Outcome::Error);
            }
        };
        let m = &self.0.websockets; // `metrics.rs`
        let opts = TunnelOptions {
            idle: WEBSOCKET_IDLE,
            drain: None,
            bytes_in: m.bytes_in.clone(),
            bytes_out: m.bytes_out.clone(),
        };
        m.open.inc();
        let open = m.open.clone();
        match switch(ws, r.response, opts, move |_| {
            open.dec();
        }) {
            Ok(res) => {
                if meridian_http::upgrade::is_tunnel(&res) {
                    m.total.inc();
                }
                Served::from_origin(res, Outcome::Pass, r.member)
            }
            // The origin did not switch: its answer is an ordinary (uncached) response.
            Err(res) => {
                m.open.dec();
                let res = self.relay(res, group.cfg.response_timeout);
                Served::from_origin(res, Outcome::Pass, r.member)
            }
        }
    }
}
