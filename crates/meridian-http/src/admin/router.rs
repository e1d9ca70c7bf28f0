//! One admin server for every node. Each node lists its routes; the router owns what
//! every admin port must do the same way: the token check (once, before the handler),
//! the 401/404/405 answers, the audit record, and `/health` and `/metrics`.
//!
//! The order of the checks is fixed, so a node's rules read off its route list:
//! 1. the token, when the request needs it: its route is guarded, or (no route for this
//!    method) any route of its path is, or the path is unknown and the router guards
//!    unknown paths ([`Router::token_by_default`]), or the request changes something and
//!    the router guards every change ([`Router::writes_need_token`]);
//! 2. the route for the method and path;
//! 3. 405 with the path's own message ([`Router::method_not_allowed`]);
//! 4. 405 for a method other than GET or HEAD when the router serves reads only
//!    ([`Router::reads_only`]);
//! 5. 404 with the node's list of endpoints.

use super::token::unauthorized;
use crate::audit::AuditLog;
use crate::body::Body;
use crate::secrets::AdminToken;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

/// Any method: for routes that answer whatever the method (most `/health`s).
pub const ANY: &[Method] = &[];

/// The methods that only read: GET and HEAD.
pub const READ: &[Method] = &[Method::GET, Method::HEAD];

type Reply = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;
type Handler<S, B> = Arc<dyn Fn(S, Request<B>) -> Reply + Send + Sync>;

struct Route<S, B> {
    path: &'static str,
    /// Empty: any method.
    methods: Vec<Method>,
    guarded: bool,
    handler: Handler<S, B>,
}

impl<S, B> Route<S, B> {
    fn takes(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }
}

/// A node's admin endpoints over its state `S` (cheap to clone: an `Arc` or a handle).
pub struct Router<S, B = Incoming> {
    state: S,
    routes: Vec<Route<S, B>>,
    token: Option<AdminToken>,
    audit: Option<Arc<AuditLog>>,
    not_found: String,
    wrong_method: Vec<(&'static str, String)>,
    reads_only: Option<String>,
    token_by_default: bool,
    writes_need_token: bool,
}

fn is_read(method: &Method) -> bool {
    READ.contains(method)
}

impl<S, B> Router<S, B>
where
    S: Clone + Send + Sync + 'static,
    B: Send + 'static,
{
    /// A router answering unknown paths with 404 and `not_found` (the node's endpoints,
    /// so whoever mistyped one sees the right name).
    pub fn new(state: S, not_found: impl Into<String>) -> Self {
        Router {
            state,
            routes: Vec::new(),
            token: None,
            audit: None,
            not_found: not_found.into(),
            wrong_method: Vec::new(),
            reads_only: None,
            token_by_default: false,
            writes_need_token: false,
        }
    }

    /// The token guarded requests need. Without one, every guarded request gets 401.
    pub fn token(mut self, token: impl Into<Option<AdminToken>>) -> Self {
        self.token = token.into();
        self
    }

    /// Records actions (and refusals) in `audit`, as [`AuditLog::observe`] decides.
    pub fn audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// A route anyone who reaches the admin port may call. `methods` empty ([`ANY`]):
    /// whatever the method.
    pub fn open<F, Fut>(self, methods: &[Method], path: &'static str, handler: F) -> Self
    where
        F: Fn(S, Request<B>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.add(methods, path, false, handler)
    }

    /// A route that needs the admin token.
    pub fn guarded<F, Fut>(self, methods: &[Method], path: &'static str, handler: F) -> Self
    where
        F: Fn(S, Request<B>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.add(methods, path, true, handler)
    }

    fn add<F, Fut>(mut self, methods: &[Method], path: &'static str, guarded: bool, f: F) -> Self
    where
        F: Fn(S, Request<B>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        self.routes.push(Route {
            path,
            methods: methods.to_vec(),
            guarded,
            handler: Arc::new(move |s, req| Box::pin(f(s, req))),
        });
        self
    }

    /// `/metrics`, open, any method: the node's Prometheus text.
    pub fn metrics<F>(self, text: F) -> Self
    where
        F: Fn(&S) -> String + Send + Sync + 'static,
    {
        self.open(ANY, "/metrics", move |s, _| {
            let res = crate::body::metrics(text(&s));
            async move { res }
        })
    }

    /// `/health`, open, any method: the JSON `body` makes, 200 when its `status` is
    /// `healthy` and 503 otherwise, so a monitor needs only the code and a person the body.
    pub fn health<F>(self, body: F) -> Self
    where
        F: Fn(&S) -> serde_json::Value + Send + Sync + 'static,
    {
        self.open(ANY, "/health", move |s, _| {
            let v = body(&s);
            let code = if v["status"] == "healthy" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let res = crate::body::json(code, v.to_string());
            async move { res }
        })
    }

    /// Answers a known `path` asked with a method none of its routes takes with 405 and
    /// `message` (without one, such a request falls through to the later rules).
    pub fn method_not_allowed(mut self, path: &'static str, message: impl Into<String>) -> Self {
        self.wrong_method.push((path, message.into()));
        self
    }

    /// Answers any other method than GET and HEAD that no route takes with 405 and
    /// `message`, before the 404: for nodes whose open endpoints only read.
    pub fn reads_only(mut self, message: impl Into<String>) -> Self {
        self.reads_only = Some(message.into());
        self
    }

    /// Unknown paths need the token too, so a client without it learns nothing from
    /// 404s about what the port serves.
    pub fn token_by_default(mut self) -> Self {
        self.token_by_default = true;
        self
    }

    /// Every request other than GET and HEAD needs the token, whatever its path.
    pub fn writes_need_token(mut self) -> Self {
        self.writes_need_token = true;
        self
    }

    /// Answers one request from `peer`.
    pub async fn handle(&self, peer: SocketAddr, req: Request<B>) -> Response<Body> {
        match &self.audit {
            Some(audit) => audit.observe(peer, req, |req| self.dispatch(req)).await,
            None => self.dispatch(req).await,
        }
    }

    /// The route for `method` and `path`, and whether the request needs the token.
    /// Kept apart from [`Router::dispatch`] so no iterator lives across its `await`.
    fn lookup(&self, method: &Method, path: &str) -> (Option<&Route<S, B>>, bool) {
        let route = self
            .routes
            .iter()
            .find(|r| r.path == path && r.takes(method));
        let known = self.routes.iter().any(|r| r.path == path);
        let guarded = match route {
            Some(r) => r.guarded,
            None if known => self.routes.iter().any(|r| r.path == path && r.guarded),
            None => self.token_by_default,
        } || (self.writes_need_token && !is_read(method));
        (route, guarded)
    }

    async fn dispatch(&self, req: Request<B>) -> Response<Body> {
        let (route, guarded) = self.lookup(req.method(), req.uri().path());
        if guarded
            && !self
                .token
                .as_ref()
                .is_some_and(|t| t.accepts(req.headers()))
        {
            return unauthorized();
        }
        if let Some(r) = route {
            return (r.handler)(self.state.clone(), req).await;
        }
        let path = req.uri().path();
        if let Some((_, message)) = self.wrong_method.iter().find(|(p, _)| *p == path) {
            return crate::body::text(StatusCode::METHOD_NOT_ALLOWED, message.clone());
        }
        match &self.reads_only {
            Some(message) if !is_read(req.method()) => {
                crate::body::text(StatusCode::METHOD_NOT_ALLOWED, message.clone())
            }
            _ => crate::body::text(StatusCode::NOT_FOUND, self.not_found.clone()),
        }
    }
}

impl<S> Router<S, Incoming>
where
    S: Clone + Send + Sync + 'static,
{
    /// Serves the routes on `listener` with the admin listener's limits until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let router = Arc::new(self);
        crate::serve(
            listener,
            crate::ServerOptions::admin(),
            move |peer| {
                let router = router.clone();
                hyper::service::service_fn(move |req: Request<Incoming>| {
                    let router = router.clone();
                    async move { Ok::<_, std::convert::Infallible>(router.handle(peer, req).await) }
                })
            },
            shutdown,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use http_body_util::BodyExt;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn req(method: Method, path: &str, token: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(()).unwrap()
    }

    async fn call(r: &Router<u32, ()>, q: Request<()>) -> (u16, String) {
        let res = r.handle(peer(), q).await;
        let code = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    fn node() -> Router<u32, ()> {
        Router::new(7u32, "endpoints: /health, /metrics, /thing, POST /act")
            .token(AdminToken::from("s3cret"))
            .health(|n| serde_json::json!({"status": "healthy", "n": n}))
            .metrics(|n| format!("meridian_n {n}\n"))
            .open(&[Method::GET], "/thing", |n, _| async move {
                crate::body::text(StatusCode::OK, format!("thing {n}"))
            })
            .guarded(&[Method::POST], "/act", |_, _| async move {
                crate::body::text(StatusCode::OK, "done")
            })
    }

    #[tokio::test]
    async fn open_routes_answer_anyone() {
        let r = node();
        assert_eq!(
            call(&r, req(Method::GET, "/thing", None)).await,
            (200, "thing 7\n".into())
        );
        let (code, body) = call(&r, req(Method::PUT, "/health", None)).await;
        assert_eq!(code, 200, "health takes any method");
        assert!(body.contains("\"n\":7"));
        assert_eq!(
            call(&r, req(Method::GET, "/metrics", None)).await.1,
            "meridian_n 7\n"
        );
    }

    #[tokio::test]
    async fn guarded_routes_need_the_token_before_anything_else() {
        let r = node();
        let res = r.handle(peer(), req(Method::POST, "/act", None)).await;
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(
            call(&r, req(Method::POST, "/act", Some("guess"))).await.0,
            401
        );
        assert_eq!(
            call(&r, req(Method::GET, "/act", None)).await.0,
            401,
            "a wrong method too"
        );
        assert_eq!(
            call(&r, req(Method::POST, "/act", Some("s3cret"))).await.0,
            200
        );
        assert_eq!(
            call(&r, req(Method::GET, "/act", Some("s3cret"))).await.0,
            404
        );
    }

    #[tokio::test]
    async fn no_token_configured_opens_nothing() {
        let r = node().token(None);
        assert_eq!(call(&r, req(Method::POST, "/act", Some(""))).await.0, 401);
    }

    #[tokio::test]
    async fn wrong_methods_and_unknown_paths() {
        let r = node().method_not_allowed("/thing", "/thing takes GET");
        assert_eq!(
            call(&r, req(Method::POST, "/thing", None)).await,
            (405, "/thing takes GET\n".into())
        );
        assert_eq!(
            call(&r, req(Method::GET, "/nope", None)).await,
            (
                404,
                "endpoints: /health, /metrics, /thing, POST /act\n".into()
            )
        );
        let r = node().reads_only("admin endpoints take GET");
        assert_eq!(call(&r, req(Method::DELETE, "/nope", None)).await.0, 405);
        assert_eq!(call(&r, req(Method::HEAD, "/nope", None)).await.0, 404);
    }

    #[tokio::test]
    async fn the_router_can_guard_unknown_paths_or_every_change() {
        let r = node().token_by_default();
        assert_eq!(call(&r, req(Method::GET, "/nope", None)).await.0, 401);
        assert_eq!(
            call(&r, req(Method::GET, "/nope", Some("s3cret"))).await.0,
            404
        );
        assert_eq!(call(&r, req(Method::GET, "/thing", None)).await.0, 200);
        let r = node().writes_need_token();
        assert_eq!(call(&r, req(Method::PUT, "/health", None)).await.0, 401);
        assert_eq!(
            call(&r, req(Method::PUT, "/health", Some("s3cret")))
                .await
                .0,
            200
        );
        assert_eq!(call(&r, req(Method::POST, "/nope", None)).await.0, 401);
        assert_eq!(call(&r, req(Method::GET, "/nope", None)).await.0, 404);
    }

    #[tokio::test]
    async fn health_is_503_unless_healthy() {
        let r: Router<u32, ()> =
            Router::new(0, "").health(|_| serde_json::json!({"status": "unhealthy"}));
        assert_eq!(call(&r, req(Method::GET, "/health", None)).await.0, 503);
    }

    #[tokio::test]
    async fn actions_and_refusals_are_audited() {
        let d = std::env::temp_dir().join(format!("meridian-router-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let r = node().audit(Arc::new(AuditLog::open(&d, "n").unwrap()));
        call(&r, req(Method::GET, "/thing", None)).await;
        call(&r, req(Method::POST, "/act", None)).await;
        call(&r, req(Method::POST, "/act?x=1", Some("s3cret"))).await;
        let events = crate::audit::read_all(&d, None).unwrap();
        let seen: Vec<_> = events
            .iter()
            .map(|e| (e.action.as_str(), e.result))
            .collect();
        assert_eq!(
            seen,
            [("POST /act", 401), ("POST /act", 200)],
            "reads go unrecorded"
        );
        assert_eq!(events[1].target, "x=1");
        let _ = std::fs::remove_dir_all(&d);
    }
}
