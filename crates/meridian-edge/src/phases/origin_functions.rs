//! The origin-request and origin-response hooks (Lambda@Edge's): run only when the PoP goes
//! to the origin (a cache miss or a pass), with Lambda@Edge's event shape. An origin-request
//! function may change the URI, query string and headers, or answer in the origin's place;
//! an origin-response function may change the status and headers and replace the body. What
//! they make is stored like the origin's own answer, so a hit never runs them. Their budget
//! is seconds, not a millisecond, so they run on the blocking pool, never on a worker.

use super::context::RequestContext;
use super::error::{text_headers, ErrorAnswer};
use super::functions::returned_path;
use crate::edge::Edge;
use crate::functions::Function;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use meridian_config::FunctionEvent;
use meridian_functions::lambda::{
    LambdaConfig, LambdaHeader, LambdaHeaders, LambdaRequest, LambdaResponse,
};
use meridian_functions::{ErrorKind, ExecutionError, LambdaEvent, OriginOutcome};
use meridian_http::Body;
use std::sync::Arc;

/// The origin functions of one request, owned so a fill can outlive its viewer.
#[derive(Clone, Default)]
pub(crate) struct OriginHooks {
    request: Option<Arc<Function>>,
    response: Option<Arc<Function>>,
    client_ip: String,
    request_id: String,
}

impl OriginHooks {
    pub fn is_empty(&self) -> bool {
        self.request.is_none() && self.response.is_none()
    }
}

/// The request as it leaves for the origin, which an origin-request function may change.
pub(crate) struct OriginCall<'a> {
    pub method: &'a Method,
    pub path_and_query: &'a mut String,
    pub headers: &'a mut HeaderMap,
}

impl<'a> OriginCall<'a> {
    pub fn new(
        method: &'a Method,
        path_and_query: &'a mut String,
        headers: &'a mut HeaderMap,
    ) -> Self {
        OriginCall {
            method,
            path_and_query,
            headers,
        }
    }
}

/// Largest body an origin-response function may set (Lambda@Edge's 1 MB).
const MAX_GENERATED_BODY: usize = 1 << 20;

impl Edge {
    /// The behavior's origin functions for this request.
    /// A regional cache runs none for a PoP's request: the PoP ran them on its way to the
    /// tier, and running them twice would rewrite twice.
    pub(super) fn origin_hooks(&self, ctx: &RequestContext<'_>) -> OriginHooks {
        let f = &self.0.functions;
        let viewer = ctx.tier.is_none();
        OriginHooks {
            request: f
                .for_behavior(ctx.behavior, FunctionEvent::OriginRequest)
                .filter(|_| viewer)
                .cloned(),
            response: f
                .for_behavior(ctx.behavior, FunctionEvent::OriginResponse)
                .filter(|_| viewer)
                .cloned(),
            client_ip: meridian_http::ids::ip_text(ctx.peer.addr.ip()),
            request_id: ctx.request_id.clone(),
        }
    }

    /// Runs the origin-request function: `Ok(None)` to go on to the origin with the request
    /// (perhaps changed), `Ok(Some(response))` when the function answered in its place, or
    /// the error answer when it failed.
    pub(super) async fn origin_request_hook(
        &self,
        hooks: &OriginHooks,
        call: OriginCall<'_>,
    ) -> Result<Option<Response<Body>>, ErrorAnswer> {
        let Some(function) = hooks.request.clone() else {
            return Ok(None);
        };
        let request = lambda_request(hooks, call.method, call.path_and_query, call.headers);
        let event = LambdaEvent::new(
            self.lambda_config(hooks, FunctionEvent::OriginRequest),
            request,
            None,
        );
        match self.invoke(function, event).await? {
            OriginOutcome::Request(r) => {
                let (path, headers) = from_lambda_request(&r)
                    .map_err(|e| self.lambda_failed(ErrorKind::InvalidOutput, &e))?;
                *call.path_and_query = path;
                // Framing is the edge's, as for every origin request.
                let mut headers = headers;
                for h in [
                    http::header::CONTENT_LENGTH,
                    http::header::TRANSFER_ENCODING,
                ] {
                    headers.remove(&h);
                }
                *call.headers = headers;
                Ok(None)
            }
            OriginOutcome::Response(r) => to_response(r)
                .map(Some)
                .map_err(|e| self.lambda_failed(ErrorKind::InvalidOutput, &e)),
        }
    }

    /// Runs the origin-response function on the origin's answer (its body is not read:
    /// Lambda@Edge does not hand it over, but the function may replace it).
    pub(super) async fn origin_response_hook(
        &self,
        hooks: &OriginHooks,
        call: OriginCall<'_>,
        response: Response<Body>,
    ) -> Result<Response<Body>, ErrorAnswer> {
        let Some(function) = hooks.response.clone() else {
            return Ok(response);
        };
        let request = lambda_request(hooks, call.method, call.path_and_query, call.headers);
        let seen = LambdaResponse {
            status: response.status().as_u16().to_string(),
            status_description: response.status().canonical_reason().map(str::to_owned),
            headers: lambda_headers(response.headers()),
            body: None,
            body_encoding: None,
        };
        let event = LambdaEvent::new(
            self.lambda_config(hooks, FunctionEvent::OriginResponse),
            request,
            Some(seen),
        );
        let out = match self.invoke(function, event).await? {
            OriginOutcome::Response(r) => r,
            OriginOutcome::Request(_) => {
                return Err(self.lambda_failed(
                    ErrorKind::InvalidOutput,
                    "an origin-response function must return a response",
                ))
            }
        };
        let replaced = out.body.is_some();
        let generated =
            to_response(out).map_err(|e| self.lambda_failed(ErrorKind::InvalidOutput, &e))?;
        if replaced {
            return Ok(generated);
        }
        // The origin's body goes on, under the function's status and headers; its framing
        // headers stay the origin's.
        let (mut parts, body) = response.into_parts();
        let (new_parts, _) = generated.into_parts();
        let mut headers = new_parts.headers;
        for h in [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::CONTENT_ENCODING,
        ] {
            headers.remove(&h);
            for v in parts.headers.get_all(&h) {
                headers.append(h.clone(), v.clone());
            }
        }
        parts.status = new_parts.status;
        parts.headers = headers;
        Ok(Response::from_parts(parts, body))
    }

    fn lambda_config(&self, hooks: &OriginHooks, event: FunctionEvent) -> LambdaConfig {
        LambdaConfig {
            distribution_domain_name: self.0.distribution_domain.clone(),
            distribution_id: self.0.distribution_id.clone(),
            event_type: event.as_str().to_owned(),
            request_id: hooks.request_id.clone(),
        }
    }

    /// One invocation on the blocking pool, counted.
    async fn invoke(
        &self,
        function: Arc<Function>,
        event: LambdaEvent,
    ) -> Result<OriginOutcome, ErrorAnswer> {
        let f = function.clone();
        let ran = tokio::task::spawn_blocking(move || match f.pool.get() {
            Ok(mut engine) => engine.origin(&event),
            Err(e) => Err(ExecutionError {
                kind: ErrorKind::Internal,
                message: format!("no engine: {e}"),
                logs: Vec::new(),
                compute_utilization: 0,
            }),
        })
        .await;
        let ran = ran.unwrap_or_else(|e| {
            Err(ExecutionError {
                kind: ErrorKind::Internal,
                message: format!("the function's task failed: {e}"),
                logs: Vec::new(),
                compute_utilization: 0,
            })
        });
        match ran {
            Ok(inv) => {
                function.record(
                    inv.compute_utilization,
                    inv.cpu_measured.then_some(inv.cpu_time),
                    None,
                );
                Ok(inv.output)
            }
            Err(e) => {
                function.record(e.compute_utilization, None, Some(e.kind));
                tracing::warn!(pop = %self.0.pop, function = %function.name, kind = ?e.kind, message = %e.message, "origin function failed");
                Err(self.lambda_failed(e.kind, &e.message))
            }
        }
    }

    /// Lambda@Edge's answers to a failed function: 502 for an invalid result, 503 for an
    /// error, a timeout or memory.
    fn lambda_failed(&self, kind: ErrorKind, message: &str) -> ErrorAnswer {
        let (status, what) = match kind {
            ErrorKind::InvalidOutput => (StatusCode::BAD_GATEWAY, "LambdaValidationError"),
            ErrorKind::Timeout | ErrorKind::Memory => {
                (StatusCode::SERVICE_UNAVAILABLE, "LambdaLimitExceeded")
            }
            _ => (StatusCode::SERVICE_UNAVAILABLE, "LambdaExecutionError"),
        };
        tracing::debug!(pop = %self.0.pop, what, message, "origin function error answer");
        ErrorAnswer {
            status,
            headers: text_headers(),
            body: Bytes::from(format!(
                "{} ERROR: The request could not be satisfied. {what}: the function associated with the distribution failed.\n",
                status.as_u16()
            )),
            origin: None,
        }
    }
}

fn lambda_headers(h: &HeaderMap) -> LambdaHeaders {
    let mut out = LambdaHeaders::new();
    for (name, value) in h {
        out.entry(name.as_str().to_owned())
            .or_default()
            .push(LambdaHeader {
                key: Some(name.as_str().to_owned()),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            });
    }
    out
}

fn header_map(h: &LambdaHeaders) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (name, values) in h {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        for v in values {
            let v = HeaderValue::from_str(&v.value)
                .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
            out.append(n.clone(), v);
        }
    }
    Ok(out)
}

fn lambda_request(
    hooks: &OriginHooks,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
) -> LambdaRequest {
    let (uri, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    LambdaRequest {
        client_ip: hooks.client_ip.clone(),
        headers: lambda_headers(headers),
        method: method.as_str().to_owned(),
        querystring: query.to_owned(),
        uri: uri.to_owned(),
        origin: None,
        body: None,
    }
}

fn from_lambda_request(r: &LambdaRequest) -> Result<(String, HeaderMap), String> {
    let path = returned_path(&r.uri)?;
    let path_and_query = if r.querystring.is_empty() {
        path
    } else {
        format!("{path}?{}", r.querystring.trim_start_matches('?'))
    };
    Ok((path_and_query, header_map(&r.headers)?))
}

/// A response a function made (or replaced the body of).
fn to_response(r: LambdaResponse) -> Result<Response<Body>, String> {
    let code: u16 = r
        .status
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not an HTTP status", r.status))?;
    let status = StatusCode::from_u16(code).map_err(|_| format!("{code} is not an HTTP status"))?;
    let body = match (&r.body, r.body_encoding.as_deref()) {
        (None, _) => Vec::new(),
        (Some(b), Some("base64")) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("the body is not base64: {e}"))?
        }
        (Some(b), _) => b.clone().into_bytes(),
    };
    if body.len() > MAX_GENERATED_BODY {
        return Err(format!(
            "the body is {} bytes; the most is {MAX_GENERATED_BODY}",
            body.len()
        ));
    }
    let mut headers = header_map(&r.headers)?;
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONTENT_ENCODING,
    ] {
        headers.remove(h);
    }
    let mut res = Response::new(meridian_http::full(body));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Ok(res)
}
