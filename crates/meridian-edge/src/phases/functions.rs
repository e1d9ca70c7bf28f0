//! The viewer-request and viewer-response hooks: the behavior's CloudFront Function sees
//! the request (and response) in CloudFront's event shape and may change it, or answer at
//! the edge. A function that fails makes that one request a 503, as CloudFront does; the
//! engine is rebuilt when it must be, and no other request notices.

use super::context::{OriginChoice, RequestContext, Served};
use super::outcome::Outcome;
use crate::edge::Edge;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use meridian_config::FunctionEvent;
use meridian_functions::event::{Context, Field, Headers, MultiValue, QueryString, Request};
use meridian_functions::{Changes, ErrorKind, Event, ExecutionError, OriginChange, RequestChanges};
use meridian_http::Body;
use std::sync::Arc;

impl Edge {
    /// Runs the behavior's viewer-request function: None when the request goes on (perhaps
    /// changed in `ctx`), or the answer when the function made one or failed.
    pub(super) fn viewer_request_function(&self, ctx: &mut RequestContext<'_>) -> Option<Served> {
        let function = self
            .0
            .functions
            .for_behavior(ctx.behavior, FunctionEvent::ViewerRequest)?;
        let event = Event::viewer_request(
            self.fn_context(ctx),
            meridian_http::ids::ip_text(ctx.peer.addr.ip()),
            to_event_request(ctx),
        );
        let result = match function.pool.get() {
            Ok(mut engine) => engine.viewer_request_changes(&event),
            Err(e) => Err(engine_unavailable(e)),
        };
        match result {
            Ok(inv) => {
                function.record(
                    inv.compute_utilization,
                    inv.cpu_measured.then_some(inv.cpu_time),
                    None,
                );
                if let Some(change) = &inv.origin_change {
                    match self.choose_origin(change) {
                        Ok(choice) => ctx.origin = Some(choice),
                        Err(why) => {
                            return Some(self.function_failed(
                                &function.name,
                                ErrorKind::InvalidOutput,
                                &why,
                            ))
                        }
                    }
                }
                match inv.output {
                    Changes::Request(c) => match apply_changes(ctx, &event.request, c) {
                        Ok(()) => None,
                        Err(why) => Some(self.function_failed(
                            &function.name,
                            ErrorKind::InvalidOutput,
                            &why,
                        )),
                    },
                    Changes::Response(r) => match to_http_response(r) {
                        Ok(res) => Some(Served::at_edge(res, Outcome::FunctionGenerated)),
                        Err(why) => Some(self.function_failed(
                            &function.name,
                            ErrorKind::InvalidOutput,
                            &why,
                        )),
                    },
                }
            }
            Err(e) => {
                function.record(e.compute_utilization, None, Some(e.kind));
                Some(self.function_failed(&function.name, e.kind, &e.message))
            }
        }
    }

    /// Runs the behavior's viewer-response function on `served`, with the edge's headers
    /// already on it. Not for responses a function made or refused, as CloudFront.
    pub(super) fn viewer_response_function(&self, ctx: &RequestContext<'_>, served: &mut Served) {
        if matches!(
            served.outcome,
            Outcome::FunctionGenerated
                | Outcome::FunctionExecutionError
                | Outcome::FunctionThrottled
        ) {
            return;
        }
        let Some(function) = self
            .0
            .functions
            .for_behavior(ctx.behavior, FunctionEvent::ViewerResponse)
        else {
            return;
        };
        let response = meridian_functions::Response {
            status_code: served.response.status().as_u16(),
            status_description: served
                .response
                .status()
                .canonical_reason()
                .map(str::to_owned),
            headers: to_fields(served.response.headers(), |n| n != http::header::SET_COOKIE),
            cookies: response_cookies(served.response.headers()),
            body: None,
        };
        let event = Event::viewer_response(
            self.fn_context(ctx),
            meridian_http::ids::ip_text(ctx.peer.addr.ip()),
            to_event_request(ctx),
            response,
        );
        let result = match function.pool.get() {
            Ok(mut engine) => engine.viewer_response(&event),
            Err(e) => Err(engine_unavailable(e)),
        };
        match result {
            Ok(inv) => {
                function.record(
                    inv.compute_utilization,
                    inv.cpu_measured.then_some(inv.cpu_time),
                    None,
                );
                if let Err(why) = apply_response(&mut served.response, inv.output) {
                    *served = self.function_failed(&function.name, ErrorKind::InvalidOutput, &why);
                }
            }
            Err(e) => {
                function.record(e.compute_utilization, None, Some(e.kind));
                *served = self.function_failed(&function.name, e.kind, &e.message);
            }
        }
    }

    /// What a function's `cloudfront` origin call means here. Origins are the
    /// distribution's: a group by name, or members (`lb:<region>`, `http://IP:PORT`) of one
    /// group. `updateRequestOrigin` to an arbitrary domain is refused: a PoP sends only to
    /// origins the config names (no function can point it at an internal address).
    fn choose_origin(&self, change: &OriginChange) -> Result<OriginChoice, String> {
        let origins = self.origins();
        let member_of = |id: &str| {
            origins.groups.iter().find_map(|g| {
                let i = g.members.iter().position(|m| m.name == id)?;
                Some((g.clone(), i))
            })
        };
        match change {
            OriginChange::SelectById(id) => {
                if let Some(g) = origins.group(id) {
                    return Ok(OriginChoice { group: g.clone(), members: None });
                }
                let (group, i) = member_of(id)
                    .ok_or_else(|| format!("selectRequestOriginById: no origin or origin group `{id}`"))?;
                Ok(OriginChoice { group, members: Some(Arc::from([i])) })
            }
            OriginChange::CreateGroup(params) => {
                let ids: Vec<&str> = params
                    .get("originIds")
                    .and_then(|v| v.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                let first = ids
                    .first()
                    .ok_or("createRequestOriginGroup: originIds names no origin")?;
                let (group, _) = member_of(first)
                    .ok_or_else(|| format!("createRequestOriginGroup: no origin `{first}`"))?;
                let mut members = Vec::new();
                for id in &ids {
                    let i = group
                        .members
                        .iter()
                        .position(|m| m.name == *id)
                        .ok_or_else(|| {
                            format!("createRequestOriginGroup: `{id}` is not in origin group `{}` with `{first}`", group.cfg.name)
                        })?;
                    members.push(i);
                }
                Ok(OriginChoice { group, members: Some(members.into()) })
            }
            OriginChange::Update(_) => Err(
                "updateRequestOrigin is not supported: a PoP sends only to origins the config names; use selectRequestOriginById".into(),
            ),
        }
    }

    fn fn_context(&self, ctx: &RequestContext<'_>) -> Context {
        Context {
            distribution_domain_name: self.0.distribution_domain.clone(),
            distribution_id: self.0.distribution_id.clone(),
            event_type: String::new(),
            request_id: ctx.request_id.clone(),
        }
    }

    /// CloudFront's answer to a failed function: 503, with its error text, logged.
    fn function_failed(&self, function: &str, kind: ErrorKind, message: &str) -> Served {
        tracing::warn!(pop = %self.0.pop, function, ?kind, message, "edge function failed");
        let (outcome, text) = match kind {
            ErrorKind::Timeout => (
                Outcome::FunctionThrottled,
                "503 ERROR: The request could not be satisfied. The CloudFront function associated with the CloudFront distribution was throttled.",
            ),
            _ => (
                Outcome::FunctionExecutionError,
                "503 ERROR: The request could not be satisfied. The CloudFront function associated with the CloudFront distribution is invalid or could not run.",
            ),
        };
        Served::at_edge(
            meridian_http::text(StatusCode::SERVICE_UNAVAILABLE, text),
            outcome,
        )
    }
}

fn engine_unavailable(e: meridian_functions::CompileError) -> ExecutionError {
    ExecutionError {
        kind: ErrorKind::Internal,
        message: format!("no engine: {e}"),
        logs: Vec::new(),
        compute_utilization: 0,
    }
}

/// Headers in CloudFront's shape: lowercase names, the first value in `value`, every value
/// in `multiValue` when there are several. One walk over the map (it yields a name's values
/// together), no lookup per name.
fn to_fields(headers: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) -> Headers {
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut out = Headers::new();
    let mut current: Option<(&HeaderName, Field)> = None;
    for (name, value) in headers {
        if !keep(name) {
            continue;
        }
        match &mut current {
            Some((n, f)) if *n == name => {
                // Most headers have one value: the list only appears with a second one.
                let mv = f.multi_value.get_or_insert_with(|| {
                    vec![MultiValue {
                        value: f.value.clone(),
                    }]
                });
                mv.push(MultiValue { value: text(value) });
            }
            _ => {
                if let Some((n, f)) = current.take() {
                    flush(&mut out, n, f);
                }
                current = Some((name, Field::new(text(value))));
            }
        }
    }
    if let Some((n, f)) = current {
        flush(&mut out, n, f);
    }
    out
}

/// Adds a header's field; should the map ever yield a name's values apart, they are joined.
fn flush(out: &mut Headers, name: &HeaderName, f: Field) {
    match out.get_mut(name.as_str()) {
        None => {
            out.insert(name.as_str().to_owned(), f);
        }
        Some(have) => {
            let first = MultiValue {
                value: have.value.clone(),
            };
            let mv = have.multi_value.get_or_insert_with(|| vec![first]);
            match f.multi_value {
                Some(more) => mv.extend(more),
                None => mv.push(MultiValue { value: f.value }),
            }
        }
    }
}

fn field(mut values: Vec<String>) -> Field {
    if values.len() == 1 {
        return Field::new(values.pop().unwrap_or_default());
    }
    Field {
        value: values.first().cloned().unwrap_or_default(),
        multi_value: Some(
            values
                .into_iter()
                .map(|value| MultiValue { value })
                .collect(),
        ),
    }
}

/// The request as a function sees it: the URI without the query, the query string and
/// cookies as maps (values as the viewer sent them), the other headers.
fn to_event_request(ctx: &RequestContext<'_>) -> Request {
    let mut querystring = QueryString::new();
    let mut order: Vec<(String, Vec<String>)> = Vec::new();
    for pair in ctx
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match order.iter_mut().find(|(n, _)| n == k) {
            Some((_, vs)) => vs.push(v.to_owned()),
            None => order.push((k.to_owned(), vec![v.to_owned()])),
        }
    }
    for (k, vs) in order {
        querystring.insert(k, field(vs));
    }
    let mut cookies = meridian_functions::event::Cookies::new();
    for header in ctx.headers.get_all(http::header::COOKIE) {
        for c in String::from_utf8_lossy(header.as_bytes()).split(';') {
            let c = c.trim();
            if c.is_empty() {
                continue;
            }
            let (k, v) = c.split_once('=').unwrap_or((c, ""));
            let entry = cookies.entry(k.to_owned()).or_insert_with(|| Field::new(v));
            if entry.value != v {
                let mv = entry.multi_value.get_or_insert_with(|| {
                    vec![MultiValue {
                        value: entry.value.clone(),
                    }]
                });
                mv.push(MultiValue {
                    value: v.to_owned(),
                });
            }
        }
    }
    Request {
        method: ctx.method.as_str().to_owned(),
        uri: ctx.path.clone(),
        querystring,
        headers: to_fields(&ctx.headers, |n| n != http::header::COOKIE),
        cookies,
    }
}

fn values(f: &Field) -> Vec<&str> {
    match &f.multi_value {
        Some(mv) if !mv.is_empty() => mv.iter().map(|m| m.value.as_str()).collect(),
        _ => vec![f.value.as_str()],
    }
}

fn header_map(headers: &Headers) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (name, f) in headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        for v in values(f) {
            let v = HeaderValue::from_str(v)
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
            out.append(n.clone(), v);
        }
    }
    Ok(out)
}

/// Headers a function cannot set: framing and the host stay the viewer's.
fn framing(name: &HeaderName) -> bool {
    name == http::header::CONTENT_LENGTH
        || name == http::header::TRANSFER_ENCODING
        || name == http::header::HOST
}

/// Takes what the function changed, to the same effect as [`apply_request`] on the whole
/// returned request, touching only the headers it changed. A header name that is not
/// already canonical (uppercase letters, which two keys could share) or `cookie` in the
/// headers takes the whole-request path, whose merging rules are subtle.
fn apply_changes(
    ctx: &mut RequestContext<'_>,
    event: &Request,
    c: RequestChanges,
) -> Result<(), String> {
    let canonical = |n: &str| n.bytes().all(|b| !b.is_ascii_uppercase()) && n != "cookie";
    if !c.headers_set.iter().all(|(n, _)| canonical(n))
        || !c.headers_removed.iter().all(|n| canonical(n))
    {
        let keep = Kept {
            query: c.querystring.is_none(),
            cookies: c.cookies.is_none(),
        };
        return apply_request(ctx, c.apply_to(event), keep);
    }
    let path = c.uri.as_deref().map(returned_path).transpose()?;
    let mut set = Vec::with_capacity(c.headers_set.len());
    for (name, f) in &c.headers_set {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let mut vs = Vec::new();
        for v in values(f) {
            vs.push(HeaderValue::from_str(v).map_err(|_| {
                format!("the value of header `{name}` is not a valid header value")
            })?);
        }
        set.push((n, vs));
    }
    // A query string or cookies the function left alone stay as the viewer sent them.
    let cookie = c.cookies.as_ref().map(cookie_header).transpose()?;
    if let Some(q) = &c.querystring {
        ctx.query = query_string(q);
    }
    if let Some(p) = path {
        ctx.path = p;
    }
    for name in &c.headers_removed {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            if !framing(&n) {
                ctx.headers.remove(n);
            }
        }
    }
    for (n, vs) in set {
        if framing(&n) {
            continue;
        }
        ctx.headers.remove(&n);
        for v in vs {
            ctx.headers.append(n.clone(), v);
        }
    }
    // The event's headers never held the viewer's Cookie: the cookies map stands for it.
    if let Some(cookie) = cookie {
        ctx.headers.remove(http::header::COOKIE);
        if let Some(v) = cookie {
            ctx.headers.insert(http::header::COOKIE, v);
        }
    }
    Ok(())
}

/// The Cookie header for a request's cookies (none when there are none).
fn cookie_header(
    cookies: &meridian_functions::event::Cookies,
) -> Result<Option<HeaderValue>, String> {
    if cookies.is_empty() {
        return Ok(None);
    }
    let cookie: Vec<String> = cookies
        .iter()
        .flat_map(|(k, f)| values(f).into_iter().map(move |v| format!("{k}={v}")))
        .collect();
    if cookie.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&cookie.join("; "))
        .map(Some)
        .map_err(|_| "a returned cookie is not a valid header value".to_owned())
}

/// The query string for a request's parameters (none when there are none).
fn query_string(q: &QueryString) -> Option<String> {
    let query: Vec<String> = q
        .iter()
        .flat_map(|(k, f)| {
            values(f).into_iter().map(move |v| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
        })
        .collect();
    (!query.is_empty()).then(|| query.join("&"))
}

/// What a function left alone, kept as the viewer sent it.
struct Kept {
    query: bool,
    cookies: bool,
}

/// Takes the function's request: URI, query string, headers and cookies. The behavior
/// stays the one the viewer's URI chose (CloudFront routes before the function runs).
fn apply_request(ctx: &mut RequestContext<'_>, r: Request, keep: Kept) -> Result<(), String> {
    let path = returned_path(&r.uri)?;
    let mut headers = header_map(&r.headers)?;
    // Hop-by-hop and framing stay the viewer's: a function cannot smuggle a body length.
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::HOST,
    ] {
        headers.remove(&h);
        for v in ctx.headers.get_all(&h) {
            headers.append(h.clone(), v.clone());
        }
    }
    // The cookies map stands for the Cookie header, as on the other path.
    if keep.cookies {
        headers.remove(http::header::COOKIE);
        for v in ctx.headers.get_all(http::header::COOKIE) {
            headers.append(http::header::COOKIE, v.clone());
        }
    } else if let Some(v) = cookie_header(&r.cookies)? {
        headers.insert(http::header::COOKIE, v);
    }
    ctx.path = path;
    if !keep.query {
        ctx.query = query_string(&r.querystring);
    }
    ctx.headers = headers;
    Ok(())
}

fn set_cookies(
    cookies: &std::collections::BTreeMap<String, meridian_functions::event::ResponseCookie>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, c) in cookies {
        let mut one = |value: &str, attributes: &Option<String>| {
            let mut s = format!("{name}={value}");
            if let Some(a) = attributes.as_deref().filter(|a| !a.is_empty()) {
                s.push_str("; ");
                s.push_str(a.trim_start_matches(';').trim());
            }
            out.push(s);
        };
        match &c.multi_value {
            Some(mv) if !mv.is_empty() => mv.iter().for_each(|m| one(&m.value, &m.attributes)),
            _ => one(&c.value, &c.attributes),
        }
    }
    out
}

/// The response's Set-Cookie headers as CloudFront hands them to a viewer-response
/// function: by name, the value, and the attributes after it.
fn response_cookies(
    headers: &HeaderMap,
) -> std::collections::BTreeMap<String, meridian_functions::event::ResponseCookie> {
    use meridian_functions::event::{CookieValue, ResponseCookie};
    let mut out: std::collections::BTreeMap<String, ResponseCookie> = Default::default();
    for h in headers.get_all(http::header::SET_COOKIE) {
        let s = String::from_utf8_lossy(h.as_bytes());
        let (pair, attributes) = match s.split_once(';') {
            Some((p, a)) => (p, Some(a.trim().to_owned())),
            None => (&*s, None),
        };
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        match out.get_mut(&name) {
            None => {
                out.insert(
                    name,
                    ResponseCookie {
                        value,
                        attributes,
                        multi_value: None,
                    },
                );
            }
            Some(c) => {
                let first = CookieValue {
                    value: c.value.clone(),
                    attributes: c.attributes.clone(),
                };
                c.multi_value
                    .get_or_insert_with(|| vec![first])
                    .push(CookieValue { value, attributes });
            }
        }
    }
    out
}

/// A response a viewer-request function generated.
fn to_http_response(r: meridian_functions::Response) -> Result<Response<Body>, String> {
    let status = StatusCode::from_u16(r.status_code)
        .map_err(|_| format!("{} is not an HTTP status", r.status_code))?;
    let body = match &r.body {
        None => Vec::new(),
        Some(b) if b.encoding == "base64" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(&b.data)
                .map_err(|e| format!("the body is not base64: {e}"))?
        }
        Some(b) => b.data.clone().into_bytes(),
    };
    let mut res = Response::new(meridian_http::full(body));
    *res.status_mut() = status;
    let mut headers = header_map(&r.headers)?;
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
    ] {
        headers.remove(h);
    }
    for c in set_cookies(&r.cookies) {
        let v = HeaderValue::from_str(&c)
            .map_err(|_| "a cookie is not a valid header value".to_owned())?;
        headers.append(http::header::SET_COOKIE, v);
    }
    *res.headers_mut() = headers;
    Ok(res)
}

/// Takes a viewer-response function's status, headers and cookies; the body stays.
fn apply_response(res: &mut Response<Body>, r: meridian_functions::Response) -> Result<(), String> {
    let status = StatusCode::from_u16(r.status_code)
        .map_err(|_| format!("{} is not an HTTP status", r.status_code))?;
    let mut headers = header_map(&r.headers)?;
    // The body is the edge's: its framing headers stay as they were.
    for h in [
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
        http::header::CONTENT_ENCODING,
    ] {
        headers.remove(&h);
        for v in res.headers().get_all(&h) {
            headers.append(h.clone(), v.clone());
        }
    }
    // `cookies` held the response's Set-Cookie headers; what the function returns replaces them.
    headers.remove(http::header::SET_COOKIE);
    for c in set_cookies(&r.cookies) {
        let v = HeaderValue::from_str(&c)
            .map_err(|_| "a cookie is not a valid header value".to_owned())?;
        headers.append(http::header::SET_COOKIE, v);
    }
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Ok(())
}

/// A URI a function returned, made canonical as a viewer's is; the function's fault when it
/// cannot be.
pub(super) fn returned_path(uri: &str) -> Result<String, String> {
    if !uri.starts_with('/') {
        return Err(format!("the returned uri `{uri}` does not start with /"));
    }
    crate::viewer::normalize_path(uri)
        .map_err(|e| format!("the returned uri `{uri}` is not usable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names lowercase, one value in `value` alone, several in `multiValue` in the order the
    /// viewer sent them (the first also in `value`), filtered names left out.
    #[test]
    fn headers_take_cloudfronts_shape() {
        let mut h = HeaderMap::new();
        h.insert("Host", HeaderValue::from_static("example.com"));
        h.append("Accept", HeaderValue::from_static("text/html"));
        h.append("x-multi", HeaderValue::from_static("one"));
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("X-Multi", HeaderValue::from_static("two"));
        h.append("x-multi", HeaderValue::from_static("three"));
        let f = to_fields(&h, |n| n != http::header::COOKIE);
        let names: Vec<&str> = f.keys().map(String::as_str).collect();
        assert_eq!(names, ["accept", "host", "x-multi"]);
        assert_eq!(f["host"], Field::new("example.com"));
        assert_eq!(f["accept"].multi_value, None);
        let multi = &f["x-multi"];
        assert_eq!(multi.value, "one");
        let values: Vec<&str> = multi
            .multi_value
            .iter()
            .flatten()
            .map(|m| m.value.as_str())
            .collect();
        assert_eq!(values, ["one", "two", "three"]);
    }
}
