//! What the balancer's listeners serve: each connection's requests go to
//! [`LoadBalancer::handle_with`] through meridian-http's servers (our HTTP/1.1 and HTTP/2),
//! marked with how they came (TLS, the connection's trace id) and with where a target's
//! 103 Early Hints go.

use crate::proxy::{ConnTrace, LoadBalancer, ViaTls};
use http::{Request, Response};
use meridian_http::interim::InterimConn;
use meridian_http::{Body, BoxError, Peer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// One client connection of a balancer listener.
#[derive(Clone)]
pub struct Clients {
    lb: LoadBalancer,
    peer: SocketAddr,
    tls: Option<ViaTls>,
    /// Only the access log reads it: without the log a request's extensions stay empty
    /// (inserting one allocates their map).
    conn: Option<ConnTrace>,
    /// The connection's interim heads (HTTP/1.1); HTTP/2 gives each request its own.
    interim: Option<InterimConn>,
}

impl LoadBalancer {
    /// A connection to the plain listener.
    pub fn clients(&self, peer: &Peer) -> Clients {
        Clients {
            lb: self.clone(),
            peer: peer.addr,
            tls: None,
            conn: self.logged().then(ConnTrace::new),
            interim: peer.interim.clone(),
        }
    }

    /// A connection to the TLS listener: its requests are marked so the target sees
    /// `X-Forwarded-Proto: https`, and the log gets the port and TLS version.
    pub fn clients_tls(&self, peer: &Peer) -> Clients {
        Clients {
            lb: self.clone(),
            peer: peer.addr,
            tls: Some(ViaTls(peer.local.port(), peer.tls)),
            conn: Some(ConnTrace::new()),
            interim: peer.interim.clone(),
        }
    }
}

impl meridian_http::Handler for Clients {
    fn call<B>(
        &self,
        mut req: Request<B>,
        interim: Option<InterimConn>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(tls) = self.tls {
            req.extensions_mut().insert(tls);
            self.lb.lb_metrics().tls_requests.inc();
        }
        if let Some(conn) = &self.conn {
            req.extensions_mut().insert(conn.clone());
        }
        let hints = interim
            .as_ref()
            .or(self.interim.as_ref())
            .and_then(|i| i.for_navigation(req.headers()));
        Box::pin(self.lb.clone().handle_with(req, self.peer, hints))
    }
}
