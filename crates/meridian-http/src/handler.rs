//! A service over any request body: what our HTTP/2 server and hyper's HTTP/1.1 both call.

use crate::body::{Body, BoxError};
use crate::interim::InterimConn;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Body as HttpBody;
use hyper::body::Incoming;
use hyper::service::Service;
use std::future::Future;
use std::pin::Pin;

/// A service that takes any request body, so that one service answers HTTP/1.1 (hyper's
/// bodies), HTTP/2 (ours) and HTTP/3 alike.
pub trait Handler: Clone + Send + Sync + 'static {
    /// Answers `req`. `interim` is where this request's interim heads go when the
    /// protocol gives each request its own way (HTTP/2); None when the connection's
    /// `Peer` already has it (HTTP/1.1).
    fn call<B>(
        &self,
        req: Request<B>,
        interim: Option<InterimConn>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>
    where
        B: HttpBody<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>;
}

/// A [`Handler`] as hyper's service, for its HTTP/1.1 connections.
#[derive(Clone)]
pub(crate) struct HyperHandler<H>(pub(crate) H);

impl<H: Handler> Service<http::Request<Incoming>> for HyperHandler<H> {
    type Response = Response<crate::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<crate::body::Body>, Self::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let answer = self.0.call(req, None);
        Box::pin(async move {
            let mut res = answer.await;
            // hyper writes the header map alone.
            crate::received::settle_response(&mut res);
            Ok(res)
        })
    }
}
