//! The viewer-request fast path: the event is built remembering the JS values it was made
//! of, and the handler's result is read back as changes against them.
//!
//! A typical function adds a header and rewrites the URI of a request with a dozen headers.
//! Reading the whole result back (every header converted to Rust strings, the request's
//! header map rebuilt from them) cost more than the handler itself. Here a value the
//! function left alone is recognised by identity (the same QuickJS string the event was
//! built with) and not read at all; only what differs is converted, with exactly the checks
//! and error messages of the full read in `convert.rs`.

use crate::convert::{as_record, field_from_js, map, present, prop, string, ReadError, ReadResult};
use crate::event::{Cookies, Event, Field, QueryString, Request, Response};
use rquickjs::{Array, Atom, Ctx, Object, Result as JsResult, Value};
use std::collections::BTreeMap;

/// What a viewer-request function did to the event's request: `None` and empty lists mean
/// "as in the event".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestChanges {
    /// The URI the function set, when it is not the event's own string.
    pub uri: Option<String>,
    /// The whole query string, when the function changed any parameter.
    pub querystring: Option<QueryString>,
    /// The whole cookie map, when the function changed any cookie.
    pub cookies: Option<Cookies>,
    /// Headers the function added or changed, each with all its values, in the order of
    /// the returned object.
    pub headers_set: Vec<(String, Field)>,
    /// Event headers the function removed.
    pub headers_removed: Vec<String>,
}

impl RequestChanges {
    /// The complete request: `event`'s with the changes applied (tests and callers that
    /// want the whole thing).
    pub fn apply_to(&self, event: &Request) -> Request {
        let mut r = event.clone();
        if let Some(u) = &self.uri {
            r.uri = u.clone();
        }
        if let Some(q) = &self.querystring {
            r.querystring = q.clone();
        }
        if let Some(c) = &self.cookies {
            r.cookies = c.clone();
        }
        for name in &self.headers_removed {
            r.headers.remove(name);
        }
        for (name, f) in &self.headers_set {
            r.headers.insert(name.clone(), f.clone());
        }
        r
    }
}

/// What a viewer-request function decided, read as changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Continue with the event's request changed thus.
    Request(RequestChanges),
    /// Answer the viewer with this response, generated at the edge.
    Response(Response),
}

/// One field of a map as the event was built: its key, and its `value` string.
struct FieldMemo<'js> {
    atom: Atom<'js>,
    value: Value<'js>,
    /// Whether the event gave it a `multiValue` (those are always read back whole).
    multi: bool,
}

/// The JS values an event's request was built from.
pub(crate) struct RequestMemo<'js> {
    method: Value<'js>,
    uri: Value<'js>,
    querystring: Vec<FieldMemo<'js>>,
    headers: Vec<FieldMemo<'js>>,
    cookies: Vec<FieldMemo<'js>>,
    value: Atom<'js>,
    multi_value: Atom<'js>,
}

fn js_str<'js>(ctx: &Ctx<'js>, s: &str) -> JsResult<Value<'js>> {
    Ok(rquickjs::String::from_str(ctx.clone(), s)?.into_value())
}

/// `event` as `convert::event_to_js` builds it, remembering the request's values.
pub(crate) fn event_to_js<'js>(
    ctx: &Ctx<'js>,
    ev: &Event,
) -> JsResult<(Value<'js>, RequestMemo<'js>)> {
    let value = Atom::from_str(ctx.clone(), "value")?;
    let multi_value = Atom::from_str(ctx.clone(), "multiValue")?;
    let o = crate::convert::event_head_to_js(ctx, ev)?;
    let r = &ev.request;
    let req = Object::new(ctx.clone())?;
    let method = js_str(ctx, &r.method)?;
    req.set("method", method.clone())?;
    let uri = js_str(ctx, &r.uri)?;
    req.set("uri", uri.clone())?;
    let mut memo = RequestMemo {
        method,
        uri,
        querystring: Vec::with_capacity(r.querystring.len()),
        headers: Vec::with_capacity(r.headers.len()),
        cookies: Vec::with_capacity(r.cookies.len()),
        value,
        multi_value,
    };
    let (q, qm) = fields(ctx, &r.querystring, &memo)?;
    memo.querystring = qm;
    req.set("querystring", q)?;
    let (h, hm) = fields(ctx, &r.headers, &memo)?;
    memo.headers = hm;
    req.set("headers", h)?;
    let (k, km) = fields(ctx, &r.cookies, &memo)?;
    memo.cookies = km;
    req.set("cookies", k)?;
    o.set("request", req)?;
    Ok((o.into_value(), memo))
}

/// A map of fields, as `convert::fields_to_js` builds it, and what it was built from.
fn fields<'js>(
    ctx: &Ctx<'js>,
    map: &BTreeMap<String, Field>,
    memo: &RequestMemo<'js>,
) -> JsResult<(Object<'js>, Vec<FieldMemo<'js>>)> {
    let o = Object::new(ctx.clone())?;
    let mut out = Vec::with_capacity(map.len());
    for (name, f) in map {
        let fo = Object::new(ctx.clone())?;
        let value = js_str(ctx, &f.value)?;
        fo.set(memo.value.clone(), value.clone())?;
        if let Some(mv) = &f.multi_value {
            let a = Array::new(ctx.clone())?;
            for (i, m) in mv.iter().enumerate() {
                let mo = Object::new(ctx.clone())?;
                mo.set(memo.value.clone(), m.value.as_str())?;
                a.set(i, mo)?;
            }
            fo.set(memo.multi_value.clone(), a)?;
        }
        let atom = Atom::from_str(ctx.clone(), name)?;
        o.set(atom.clone(), fo)?;
        out.push(FieldMemo {
            atom,
            value,
            multi: f.multi_value.is_some(),
        });
    }
    Ok((o, out))
}

/// The handler's request read as changes against `memo`; the same checks, in the same
/// order, as `convert::request_from_js`.
pub(crate) fn request_changes_from_js<'js>(
    o: &Object<'js>,
    memo: &RequestMemo<'js>,
) -> ReadResult<RequestChanges> {
    let o = as_record(&o.clone().into_value())?;
    match prop(&o, "method")? {
        Some(v) if v == memo.method => {}
        Some(v) => {
            string(&v).map_err(|e| e.within("method"))?;
        }
        None => return Err(ReadError::invalid("missing field `method`")),
    }
    let uri = match prop(&o, "uri")? {
        Some(v) if v == memo.uri => None,
        Some(v) => Some(string(&v).map_err(|e| e.within("uri"))?),
        None => return Err(ReadError::invalid("missing field `uri`")),
    };
    let querystring = whole_if_changed(&o, "querystring", &memo.querystring, memo)?;
    let (headers_set, headers_removed) = diff(&o, "headers", &memo.headers, memo)?;
    let cookies = whole_if_changed(&o, "cookies", &memo.cookies, memo)?;
    Ok(RequestChanges {
        uri,
        querystring,
        cookies,
        headers_set,
        headers_removed,
    })
}

/// The map read whole when anything in it changed, `None` when nothing did.
fn whole_if_changed<'js>(
    o: &Object<'js>,
    key: &str,
    inputs: &[FieldMemo<'js>],
    memo: &RequestMemo<'js>,
) -> ReadResult<Option<BTreeMap<String, Field>>> {
    let (set, removed) = diff(o, key, inputs, memo)?;
    if set.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    map(o, key, field_from_js).map(Some)
}

/// Entries of the map at `key` that differ from `inputs` (read in full), and the input
/// names that are gone. Absent or `undefined` entries count as gone, as in the full read.
fn diff<'js>(
    o: &Object<'js>,
    key: &str,
    inputs: &[FieldMemo<'js>],
    memo: &RequestMemo<'js>,
) -> ReadResult<(Vec<(String, Field)>, Vec<String>)> {
    let mut set = Vec::new();
    let mut seen = vec![false; inputs.len()];
    if let Some(v) = prop(o, key)? {
        let m = as_record(&v).map_err(|e| e.within(key))?;
        let mut next = 0;
        for atom in m.keys::<Atom>() {
            let atom = atom?;
            let v: Value = m.get(atom.clone())?;
            let Some(v) = present(v) else { continue };
            // Keys come back in the order they were set, so the next input is the usual match.
            let found = if inputs.get(next).is_some_and(|i| i.atom == atom) {
                Some(next)
            } else {
                inputs.iter().position(|i| i.atom == atom)
            };
            if let Some(i) = found {
                next = i + 1;
                seen[i] = true;
                if unchanged(&v, &inputs[i], memo)? {
                    continue;
                }
            }
            let name = atom.to_string()?;
            let f = field_from_js(&v).map_err(|e| e.within(&name).within(key))?;
            set.push((name, f));
        }
    }
    let mut removed = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if !seen[i] {
            removed.push(input.atom.to_string()?);
        }
    }
    Ok((set, removed))
}

/// Whether a field still reads exactly as the event gave it: its `value` is the very string
/// the event was built with and it has no `multiValue` (those are read whole).
fn unchanged<'js>(
    v: &Value<'js>,
    input: &FieldMemo<'js>,
    memo: &RequestMemo<'js>,
) -> ReadResult<bool> {
    if input.multi {
        return Ok(false);
    }
    let Some(f) = v.as_object() else {
        return Ok(false);
    };
    if v.is_array() || v.is_function() {
        return Ok(false);
    }
    let value: Value = f.get(memo.value.clone())?;
    if value != input.value {
        return Ok(false);
    }
    let mv: Value = f.get(memo.multi_value.clone())?;
    Ok(present(mv).is_none_or(|m| m.is_null()))
}
