//! WebSockets through the balancer, as ALB carries them: the handshake goes to a target
//! picked the way any request's is, a 101 joins the client to that target
//! ([`meridian_http::upgrade`]), and the open tunnels are counted per target and drained
//! when the target (or the balancer) goes away. An `http2` target group gets the handshake
//! as an extended CONNECT stream (RFC 8441), so its targets' few connections carry every
//! tunnel.
//!
//! Apart from `proxy.rs` so the request path keeps only three one-line hooks.

use http::Response;
use meridian_http::upgrade::{switch, TunnelOptions, WsUpgrade};
use meridian_http::Body;
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge,
};
use meridian_telemetry::{Labels, Metrics};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// After the close frames are sent, how long a drain waits for the tunnels to end.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// A handshake's fields as an HTTP/1.1 target gets them and as an HTTP/2 one does, carried
/// in the request's extensions from [`take`] to [`restore`] so `forward`'s signature stays
/// as it is.
#[derive(Clone)]
struct Handshake {
    h1: http::HeaderMap,
    h2: http::HeaderMap,
}

/// Takes a WebSocket handshake out of a client's request (None for any other request).
pub(crate) fn take(parts: &mut http::request::Parts) -> Option<WsUpgrade> {
    let ws = WsUpgrade::take(parts)?;
    let (mut h1, mut h2) = (http::HeaderMap::new(), http::HeaderMap::new());
    ws.restore(&mut h1);
    ws.restore_h2(&mut h2);
    parts.extensions.insert(Handshake { h1, h2 });
    Some(ws)
}

/// Puts the handshake back on the headers sent to the target, after hop-by-hop stripping:
/// an HTTP/1.1 upgrade, or (`h2`) the fields an extended CONNECT keeps.
pub(crate) fn restore(extensions: &http::Extensions, headers: &mut http::HeaderMap, h2: bool) {
    if let Some(handshake) = extensions.get::<Handshake>() {
        // Every handshake field the client sent goes (the HTTP/1.1 set holds them all, the
        // key included, which an extended CONNECT does not carry), then the chosen set.
        for n in handshake.h1.keys() {
            headers.remove(n);
        }
        let h = if h2 { &handshake.h2 } else { &handshake.h1 };
        for (n, v) in h {
            headers.append(n.clone(), v.clone());
        }
    }
}

/// Whether the request is a WebSocket handshake (its connection must become a tunnel).
pub(crate) fn requested(extensions: &http::Extensions) -> bool {
    extensions.get::<Handshake>().is_some()
}

/// The balancer's open WebSocket tunnels.
pub(crate) struct WsTunnels {
    open: Family<Labels, Gauge>,
    total: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    /// One drain signal per target: every tunnel to the target watches it.
    drains: Mutex<HashMap<String, watch::Sender<bool>>>,
    /// Tunnels open now, over every target.
    live: Arc<watch::Sender<usize>>,
    /// The idle timeout and the deregistration delay: a reload may change them, for
    /// tunnels opened (idle) or drained (delay) after it.
    timing: Mutex<(Duration, Duration)>,
}

impl WsTunnels {
    pub(crate) fn new(metrics: &Metrics, config: &meridian_config::LoadBalancer) -> Self {
        WsTunnels {
            open: metrics.register(
                "lb_websocket_connections",
                "WebSocket tunnels open now, by target",
                Family::default(),
            ),
            total: metrics.register(
                // Exposed with `_total`; a name of its own, since the gauge has the plain one.
                "lb_websocket_connections_opened",
                "WebSocket tunnels opened",
                Counter::default(),
            ),
            bytes_in: metrics.register(
                "lb_websocket_bytes_in",
                "Bytes from clients to targets through WebSocket tunnels",
                Counter::default(),
            ),
            bytes_out: metrics.register(
                "lb_websocket_bytes_out",
                "Bytes from targets to clients through WebSocket tunnels",
                Counter::default(),
            ),
            drains: Mutex::new(HashMap::new()),
            live: Arc::new(watch::channel(0).0),
            // ALB's idle timeout applies to WebSockets as to any connection.
            timing: Mutex::new((config.idle_timeout, config.deregistration_delay)),
        }
    }

    /// The settings a reload changed.
    pub(crate) fn set_timing(&self, idle: Duration, deregistration_delay: Duration) {
        *self.timing.lock().unwrap_or_else(|p| p.into_inner()) = (idle, deregistration_delay);
    }

    fn timing(&self) -> (Duration, Duration) {
        *self.timing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tunnels open now, over every target.
    pub(crate) fn live(&self) -> usize {
        *self.live.borrow()
    }

    fn drain_signal(&self, target: &str) -> watch::Receiver<bool> {
        let mut d = self.drains.lock().unwrap_or_else(|p| p.into_inner());
        d.entry(target.to_owned())
            .or_insert_with(|| watch::channel(false).0)
            .subscribe()
    }

    /// The client's answer to a forwarded handshake: on the target's 101, the tunnel;
    /// any other answer as it is. Never retried after the 101: the target has the socket.
    pub(crate) fn finish(
        &self,
        ws: Option<WsUpgrade>,
        target: &str,
        res: Response<Body>,
    ) -> Response<Body> {
        let Some(ws) = ws else { return res };
        let gauge = self
            .open
            .get_or_create(&vec![("target", target.to_owned())])
            .clone();
        let opts = TunnelOptions {
            idle: self.timing().0,
            drain: Some(self.drain_signal(target)),
            bytes_in: self.bytes_in.clone(),
            bytes_out: self.bytes_out.clone(),
        };
        gauge.inc();
        self.live.send_modify(|n| *n += 1);
        let (g, live) = (gauge.clone(), self.live.clone());
        let target = target.to_owned();
        match switch(ws, res, opts, move |stats| {
            tracing::debug!(%target, ?stats, "websocket tunnel ended");
            g.dec();
            live.send_modify(|n| *n = n.saturating_sub(1));
        }) {
            Ok(res) => {
                if meridian_http::upgrade::is_tunnel(&res) {
                    self.total.inc();
                }
                res
            }
            Err(res) => {
                gauge.dec();
                self.live.send_modify(|n| *n = n.saturating_sub(1));
                res
            }
        }
    }

    /// Closes the tunnels of `targets` (every target when None) after the deregistration
    /// delay, as ALB does: tunnels that end on their own by then are left alone, the rest
    /// get a close frame (1001) and are cut. Resolves when they have ended (or a few
    /// seconds after the close frames, whichever is first).
    pub(crate) async fn drain(&self, targets: Option<&[&str]>) {
        let chosen = |name: &str| targets.is_none_or(|t| t.contains(&name));
        let names: Vec<String> = {
            let d = self.drains.lock().unwrap_or_else(|p| p.into_inner());
            d.keys().filter(|n| chosen(n)).cloned().collect()
        };
        let open = || -> i64 {
            names
                .iter()
                .map(|n| self.open.get_or_create(&vec![("target", n.clone())]).get())
                .sum()
        };
        let wait_closed = |limit: Duration| async move {
            let until = tokio::time::Instant::now() + limit;
            while open() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        wait_closed(self.timing().1).await;
        {
            let mut d = self.drains.lock().unwrap_or_else(|p| p.into_inner());
            for (name, tx) in d.iter_mut() {
                if chosen(name) {
                    let _ = tx.send(true);
                    // Tunnels opened from now on (a target registered again) start fresh.
                    *tx = watch::channel(false).0;
                }
            }
        }
        wait_closed(CLOSE_WAIT).await;
    }
}
