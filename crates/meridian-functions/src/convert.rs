//! Direct conversion between the viewer event types and QuickJS values.
//!
//! Viewer functions run on every request, and a JSON round trip (serde → `JSON.parse` →
//! handler → `JSON.stringify` → serde) cost about two thirds of an invocation. This module
//! builds the event object and reads the handler's result in place, accepting what the JSON
//! path accepted:
//!
//! - a property that is absent, `undefined`, a function or a symbol counts as absent
//!   (`JSON.stringify` drops those), so `#[serde(default)]` fields take their default;
//! - `null` is "none" for optional fields and an error everywhere else;
//! - values must be strings (serde refused numbers too), `statusCode` an integral number
//!   in `0..=65535`;
//! - maps are read from own enumerable string-keyed properties, as `JSON.stringify` does;
//!   entries whose value is `undefined` or a function are skipped;
//! - unknown keys are ignored.
//!
//! Deliberately stricter than the JSON path, matching CloudFront's documented shapes: an
//! array is never accepted where an object is expected (serde read structs from JSON arrays
//! positionally), and `toJSON` methods (`Date`, boxed strings) are not called.

use crate::event::{
    Body, CookieValue, Event, Field, MultiValue, Request, Response, ResponseCookie,
};
use rquickjs::{Array, Ctx, IntoJs, Object, Result as JsResult, Value};
use std::collections::BTreeMap;

/// Why a result could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// JS threw while being read (e.g. a throwing getter), or the engine failed.
    Js(rquickjs::Error),
    /// Malformed output: `path` is dotted from the returned object (empty at the top).
    Invalid { path: String, what: String },
    /// Invalid output with a final message.
    Output(String),
}

impl ReadError {
    pub(crate) fn invalid(what: impl Into<String>) -> ReadError {
        ReadError::Invalid {
            path: String::new(),
            what: what.into(),
        }
    }

    /// Prefix the path with the key the error was found under.
    pub(crate) fn within(self, key: &str) -> ReadError {
        match self {
            ReadError::Invalid { path, what } if path.is_empty() => ReadError::Invalid {
                path: key.to_string(),
                what,
            },
            ReadError::Invalid { path, what } => ReadError::Invalid {
                path: format!("{key}.{path}"),
                what,
            },
            other => other,
        }
    }

    /// The message for an `InvalidOutput` error (`None` for JS errors).
    pub(crate) fn message(&self) -> Option<String> {
        match self {
            ReadError::Js(_) => None,
            ReadError::Invalid { path, what } if path.is_empty() => {
                Some(format!("invalid output: {what}"))
            }
            ReadError::Invalid { path, what } => Some(format!("invalid output: {path}: {what}")),
            ReadError::Output(m) => Some(m.clone()),
        }
    }
}

impl From<rquickjs::Error> for ReadError {
    fn from(e: rquickjs::Error) -> Self {
        ReadError::Js(e)
    }
}

pub(crate) type ReadResult<T> = std::result::Result<T, ReadError>;

// ---------------------------------------------------------------- Rust → JS

/// Defines `o[key] = v` as a plain data property, as `JSON.parse` and the hit path's
/// skeleton (`skeleton.rs`) do: a setter a function put on `Object.prototype` never runs,
/// whichever path built the event.
fn put<'js>(ctx: &Ctx<'js>, o: &Object<'js>, key: &str, v: impl IntoJs<'js>) -> JsResult<()> {
    let atom = crate::raw::Cx::of(ctx).atom(key)?;
    crate::skeleton::define(ctx, o, atom.raw(), v.into_js(ctx)?)
}

/// `event` as the handler sees it; same keys and order as its JSON serialisation.
pub(crate) fn event_to_js<'js>(ctx: &Ctx<'js>, ev: &Event) -> JsResult<Value<'js>> {
    let o = event_head_to_js(ctx, ev)?;
    put(ctx, &o, "request", request_to_js(ctx, &ev.request)?)?;
    if let Some(r) = &ev.response {
        put(ctx, &o, "response", response_to_js(ctx, r)?)?;
    }
    Ok(o.into_value())
}

/// The event's `version`, `context` and `viewer`: what comes before its request.
pub(crate) fn event_head_to_js<'js>(ctx: &Ctx<'js>, ev: &Event) -> JsResult<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    put(ctx, &o, "version", ev.version.as_str())?;
    let c = Object::new(ctx.clone())?;
    put(
        ctx,
        &c,
        "distributionDomainName",
        ev.context.distribution_domain_name.as_str(),
    )?;
    put(
        ctx,
        &c,
        "distributionId",
        ev.context.distribution_id.as_str(),
    )?;
    put(ctx, &c, "eventType", ev.context.event_type.as_str())?;
    put(ctx, &c, "requestId", ev.context.request_id.as_str())?;
    put(ctx, &o, "context", c)?;
    let v = Object::new(ctx.clone())?;
    put(ctx, &v, "ip", ev.viewer.ip.as_str())?;
    put(ctx, &o, "viewer", v)?;
    Ok(o)
}

fn request_to_js<'js>(ctx: &Ctx<'js>, r: &Request) -> JsResult<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    put(ctx, &o, "method", r.method.as_str())?;
    put(ctx, &o, "uri", r.uri.as_str())?;
    put(ctx, &o, "querystring", fields_to_js(ctx, &r.querystring)?)?;
    put(ctx, &o, "headers", fields_to_js(ctx, &r.headers)?)?;
    put(ctx, &o, "cookies", fields_to_js(ctx, &r.cookies)?)?;
    Ok(o)
}

fn fields_to_js<'js>(ctx: &Ctx<'js>, map: &BTreeMap<String, Field>) -> JsResult<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    for (name, f) in map {
        let fo = Object::new(ctx.clone())?;
        put(ctx, &fo, "value", f.value.as_str())?;
        if let Some(mv) = &f.multi_value {
            let a = Array::new(ctx.clone())?;
            for (i, m) in mv.iter().enumerate() {
                let mo = Object::new(ctx.clone())?;
                put(ctx, &mo, "value", m.value.as_str())?;
                a.set(i, mo)?;
            }
            put(ctx, &fo, "multiValue", a)?;
        }
        put(ctx, &o, name.as_str(), fo)?;
    }
    Ok(o)
}

fn response_to_js<'js>(ctx: &Ctx<'js>, r: &Response) -> JsResult<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    put(ctx, &o, "statusCode", i32::from(r.status_code))?;
    if let Some(d) = &r.status_description {
        put(ctx, &o, "statusDescription", d.as_str())?;
    }
    put(ctx, &o, "headers", fields_to_js(ctx, &r.headers)?)?;
    let cookies = Object::new(ctx.clone())?;
    for (name, c) in &r.cookies {
        let co = cookie_value_to_js(ctx, &c.value, c.attributes.as_deref())?;
        if let Some(mv) = &c.multi_value {
            let a = Array::new(ctx.clone())?;
            for (i, m) in mv.iter().enumerate() {
                a.set(
                    i,
                    cookie_value_to_js(ctx, &m.value, m.attributes.as_deref())?,
                )?;
            }
            put(ctx, &co, "multiValue", a)?;
        }
        put(ctx, &cookies, name.as_str(), co)?;
    }
    put(ctx, &o, "cookies", cookies)?;
    if let Some(b) = &r.body {
        let bo = Object::new(ctx.clone())?;
        put(ctx, &bo, "data", b.data.as_str())?;
        put(ctx, &bo, "encoding", b.encoding.as_str())?;
        put(ctx, &o, "body", bo)?;
    }
    Ok(o)
}

fn cookie_value_to_js<'js>(
    ctx: &Ctx<'js>,
    value: &str,
    attributes: Option<&str>,
) -> JsResult<Object<'js>> {
    let o = Object::new(ctx.clone())?;
    put(ctx, &o, "value", value)?;
    if let Some(a) = attributes {
        put(ctx, &o, "attributes", a)?;
    }
    Ok(o)
}

// ---------------------------------------------------------------- JS → Rust

/// A request returned by a viewer-request function.
pub(crate) fn request_from_js(o: &Object<'_>) -> ReadResult<Request> {
    let o = as_record(&o.clone().into_value())?;
    Ok(Request {
        method: required_string(&o, "method")?,
        uri: required_string(&o, "uri")?,
        querystring: map(&o, "querystring", field_from_js)?,
        headers: map(&o, "headers", field_from_js)?,
        cookies: map(&o, "cookies", field_from_js)?,
    })
}

/// A response returned by a viewer function.
pub(crate) fn response_from_js(o: &Object<'_>) -> ReadResult<Response> {
    let o = as_record(&o.clone().into_value())?;
    Ok(Response {
        status_code: status_code(&o)?,
        status_description: optional_string(&o, "statusDescription")?,
        headers: map(&o, "headers", field_from_js)?,
        cookies: map(&o, "cookies", response_cookie_from_js)?,
        body: body(&o)?,
    })
}

/// A property as `JSON.stringify` would see it: `None` when absent, `undefined`, a function
/// or a symbol.
pub(crate) fn prop<'js>(o: &Object<'js>, key: &str) -> ReadResult<Option<Value<'js>>> {
    let v: Value = o.get(key)?;
    Ok(present(v))
}

pub(crate) fn present(v: Value<'_>) -> Option<Value<'_>> {
    if v.is_undefined() || v.is_function() || v.is_symbol() {
        None
    } else {
        Some(v)
    }
}

fn kind(v: &Value<'_>) -> &'static str {
    if v.is_array() {
        "array"
    } else if v.is_number() {
        "number"
    } else {
        v.type_name()
    }
}

/// A plain object (not an array, not null).
pub(crate) fn as_record<'js>(v: &Value<'js>) -> ReadResult<Object<'js>> {
    match v.as_object() {
        Some(o) if !v.is_array() && !v.is_function() => Ok(o.clone()),
        _ => Err(ReadError::invalid(format!(
            "expected an object, got {}",
            kind(v)
        ))),
    }
}

pub(crate) fn string(v: &Value<'_>) -> ReadResult<String> {
    match v.as_string() {
        Some(s) => Ok(s.to_string()?),
        None => Err(ReadError::invalid(format!(
            "expected a string, got {}",
            kind(v)
        ))),
    }
}

fn required_string(o: &Object<'_>, key: &str) -> ReadResult<String> {
    match prop(o, key)? {
        Some(v) => string(&v).map_err(|e| e.within(key)),
        None => Err(ReadError::invalid(format!("missing field `{key}`"))),
    }
}

fn optional_string(o: &Object<'_>, key: &str) -> ReadResult<Option<String>> {
    match prop(o, key)? {
        Some(v) if !v.is_null() => string(&v).map(Some).map_err(|e| e.within(key)),
        _ => Ok(None),
    }
}

/// A map field; absent means empty, `null` or a non-object is an error.
pub(crate) fn map<'js, T>(
    o: &Object<'js>,
    key: &str,
    item: impl Fn(&Value<'js>) -> ReadResult<T>,
) -> ReadResult<BTreeMap<String, T>> {
    let Some(v) = prop(o, key)? else {
        return Ok(BTreeMap::new());
    };
    let m = as_record(&v).map_err(|e| e.within(key))?;
    let mut out = BTreeMap::new();
    for entry in m.props::<String, Value>() {
        let (name, v) = entry?;
        let Some(v) = present(v) else { continue };
        let t = item(&v).map_err(|e| e.within(&name).within(key))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// An optional list; `null` means none, holes and `undefined` entries are errors (they
/// were `null` in JSON).
fn list<'js, T>(
    o: &Object<'js>,
    key: &str,
    item: impl Fn(&Value<'js>) -> ReadResult<T>,
) -> ReadResult<Option<Vec<T>>> {
    let v = match prop(o, key)? {
        Some(v) if !v.is_null() => v,
        _ => return Ok(None),
    };
    let Some(a) = v.as_array() else {
        return Err(ReadError::invalid(format!("expected an array, got {}", kind(&v))).within(key));
    };
    let mut out = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        let v: Value = a.get(i)?;
        out.push(item(&v).map_err(|e| e.within(&i.to_string()).within(key))?);
    }
    Ok(Some(out))
}

pub(crate) fn field_from_js(v: &Value<'_>) -> ReadResult<Field> {
    let o = as_record(v)?;
    Ok(Field {
        value: required_string(&o, "value")?,
        multi_value: list(&o, "multiValue", |v| {
            Ok(MultiValue {
                value: required_string(&as_record(v)?, "value")?,
            })
        })?,
    })
}

fn cookie_value_from_js(v: &Value<'_>) -> ReadResult<CookieValue> {
    let o = as_record(v)?;
    Ok(CookieValue {
        value: required_string(&o, "value")?,
        attributes: optional_string(&o, "attributes")?,
    })
}

fn response_cookie_from_js(v: &Value<'_>) -> ReadResult<ResponseCookie> {
    let o = as_record(v)?;
    Ok(ResponseCookie {
        value: required_string(&o, "value")?,
        attributes: optional_string(&o, "attributes")?,
        multi_value: list(&o, "multiValue", cookie_value_from_js)?,
    })
}

/// An integral number that fits `u16` (JSON had no other way to deliver one).
fn status_code(o: &Object<'_>) -> ReadResult<u16> {
    let Some(v) = prop(o, "statusCode")? else {
        return Err(ReadError::invalid("missing field `statusCode`"));
    };
    let bad = || {
        ReadError::invalid(format!(
            "expected an integer from 0 to 65535, got {}",
            kind(&v)
        ))
        .within("statusCode")
    };
    if let Some(i) = v.as_int() {
        return u16::try_from(i).map_err(|_| bad());
    }
    match v.as_float() {
        Some(f) if f.fract() == 0.0 && (0.0..=65535.0).contains(&f) => Ok(f as u16),
        _ => Err(bad()),
    }
}

/// `body` is a string (text) or `{data, encoding?}`.
fn body(o: &Object<'_>) -> ReadResult<Option<Body>> {
    let v = match prop(o, "body")? {
        Some(v) if !v.is_null() => v,
        _ => return Ok(None),
    };
    if v.is_string() {
        return Ok(Some(Body {
            data: string(&v)?,
            encoding: "text".into(),
        }));
    }
    let b = as_record(&v)
        .map_err(|_| ReadError::invalid("expected a string or {data, encoding}").within("body"))?;
    let data = required_string(&b, "data").map_err(|e| e.within("body"))?;
    let encoding = match prop(&b, "encoding")? {
        Some(e) => string(&e).map_err(|e| e.within("encoding").within("body"))?,
        None => "text".into(),
    };
    Ok(Some(Body { data, encoding }))
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
