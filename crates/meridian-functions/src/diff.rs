//! The viewer-request fast path: the event is built remembering the JS values it was made
//! of, and the handler's result is read back as changes against them.
//!
//! A typical function adds a header and rewrites the URI of a request with a dozen headers.
//! Reading the whole result back (every header converted to Rust strings, the request's
//! header map rebuilt from them) cost more than the handler itself. Here a value the
//! function left alone is recognised by identity (the same QuickJS string the event was
//! built with) and not read at all; only what differs is converted, with exactly the checks
//! and error messages of the full read in `convert.rs`.

use crate::convert::{as_record, field_from_js, map, present, string, ReadError, ReadResult};
use crate::event::{Cookies, Event, Field, QueryString, Request, Response};
use crate::skeleton::{define, get, own_keys, Key, OwnedAtom, Skeleton};
use rquickjs::{Array, Ctx, Object, Result as JsResult, Value};
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
    atom: OwnedAtom<'js>,
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
}

fn js_str<'js>(ctx: &Ctx<'js>, s: &str) -> JsResult<Value<'js>> {
    Ok(rquickjs::String::from_str(ctx.clone(), s)?.into_value())
}

/// `event` as `convert::event_to_js` builds it (same keys, same order), remembering the
/// request's values; keys and shapes come from the engine's `sk`.
pub(crate) fn event_to_js<'js>(
    ctx: &Ctx<'js>,
    ev: &Event,
    sk: &mut Skeleton,
) -> JsResult<(Value<'js>, RequestMemo<'js>)> {
    let o = Object::new(ctx.clone())?;
    sk.put(ctx, &o, Key::Version, ev.version.as_str())?;
    let c = Object::new(ctx.clone())?;
    let cx = &ev.context;
    sk.put(
        ctx,
        &c,
        Key::DistributionDomainName,
        cx.distribution_domain_name.as_str(),
    )?;
    sk.put(ctx, &c, Key::DistributionId, cx.distribution_id.as_str())?;
    sk.put(ctx, &c, Key::EventType, cx.event_type.as_str())?;
    sk.put(ctx, &c, Key::RequestId, cx.request_id.as_str())?;
    sk.put(ctx, &o, Key::Context, c)?;
    let v = Object::new(ctx.clone())?;
    sk.put(ctx, &v, Key::Ip, ev.viewer.ip.as_str())?;
    sk.put(ctx, &o, Key::Viewer, v)?;
    let r = &ev.request;
    let req = Object::new(ctx.clone())?;
    let method = js_str(ctx, &r.method)?;
    sk.put(ctx, &req, Key::Method, method.clone())?;
    let uri = js_str(ctx, &r.uri)?;
    sk.put(ctx, &req, Key::Uri, uri.clone())?;
    let q_atoms = r
        .querystring
        .keys()
        .map(|k| OwnedAtom::new(ctx, k))
        .collect::<JsResult<Vec<_>>>()?;
    let (q, querystring) = fields(ctx, &r.querystring, q_atoms, sk)?;
    sk.put(ctx, &req, Key::Querystring, q)?;
    let names: Vec<&str> = r.headers.keys().map(String::as_str).collect();
    let h_atoms = sk.header_atoms(ctx, &names)?;
    let (h, headers) = fields(ctx, &r.headers, h_atoms, sk)?;
    sk.put(ctx, &req, Key::Headers, h)?;
    let k_atoms = r
        .cookies
        .keys()
        .map(|k| OwnedAtom::new(ctx, k))
        .collect::<JsResult<Vec<_>>>()?;
    let (k, cookies) = fields(ctx, &r.cookies, k_atoms, sk)?;
    sk.put(ctx, &req, Key::Cookies, k)?;
    sk.put(ctx, &o, Key::Request, req)?;
    let memo = RequestMemo {
        method,
        uri,
        querystring,
        headers,
        cookies,
    };
    Ok((o.into_value(), memo))
}

/// A map of fields, as `convert::fields_to_js` builds it, and what it was built from;
/// `atoms` are the map's keys, in order.
fn fields<'js>(
    ctx: &Ctx<'js>,
    map: &BTreeMap<String, Field>,
    atoms: Vec<OwnedAtom<'js>>,
    sk: &Skeleton,
) -> JsResult<(Object<'js>, Vec<FieldMemo<'js>>)> {
    let o = Object::new(ctx.clone())?;
    let mut out = Vec::with_capacity(map.len());
    for (f, atom) in map.values().zip(atoms) {
        let fo = Object::new(ctx.clone())?;
        let value = js_str(ctx, &f.value)?;
        sk.put(ctx, &fo, Key::Value, value.clone())?;
        if let Some(mv) = &f.multi_value {
            let a = Array::new(ctx.clone())?;
            for (i, m) in mv.iter().enumerate() {
                let mo = Object::new(ctx.clone())?;
                sk.put(ctx, &mo, Key::Value, m.value.as_str())?;
                a.set(i, mo)?;
            }
            sk.put(ctx, &fo, Key::MultiValue, a)?;
        }
        define(ctx, &o, atom.raw, fo.into_value())?;
        out.push(FieldMemo {
            atom,
            value,
            multi: f.multi_value.is_some(),
        });
    }
    Ok((o, out))
}

/// A property as `JSON.stringify` sees it (see `convert::prop`), by fixed key.
fn fixed<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    k: Key,
    sk: &Skeleton,
) -> ReadResult<Option<Value<'js>>> {
    Ok(present(sk.get(ctx, o, k)?))
}

/// The handler's request read as changes against `memo`; the same checks, in the same
/// order, as `convert::request_from_js`.
pub(crate) fn request_changes_from_js<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    memo: &RequestMemo<'js>,
    sk: &mut Skeleton,
) -> ReadResult<RequestChanges> {
    let o = as_record(&o.clone().into_value())?;
    match fixed(ctx, &o, Key::Method, sk)? {
        Some(v) if v == memo.method => {}
        Some(v) => {
            string(&v).map_err(|e| e.within("method"))?;
        }
        None => return Err(ReadError::invalid("missing field `method`")),
    }
    let uri = match fixed(ctx, &o, Key::Uri, sk)? {
        Some(v) if v == memo.uri => None,
        Some(v) => Some(string(&v).map_err(|e| e.within("uri"))?),
        None => return Err(ReadError::invalid("missing field `uri`")),
    };
    let querystring = whole_if_changed(ctx, &o, Key::Querystring, &memo.querystring, sk)?;
    let (headers_set, headers_removed, keys) = diff(ctx, &o, Key::Headers, &memo.headers, sk)?;
    sk.keep_returned_headers(ctx, &keys)?;
    let cookies = whole_if_changed(ctx, &o, Key::Cookies, &memo.cookies, sk)?;
    Ok(RequestChanges {
        uri,
        querystring,
        cookies,
        headers_set,
        headers_removed,
    })
}

fn key_name(k: Key) -> &'static str {
    match k {
        Key::Querystring => "querystring",
        Key::Headers => "headers",
        _ => "cookies",
    }
}

/// The map read whole when anything in it changed, `None` when nothing did.
fn whole_if_changed<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    key: Key,
    inputs: &[FieldMemo<'js>],
    sk: &Skeleton,
) -> ReadResult<Option<BTreeMap<String, Field>>> {
    let (set, removed, _) = diff(ctx, o, key, inputs, sk)?;
    if set.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    map(o, key_name(key), field_from_js).map(Some)
}

/// Entries of the map at `key` that differ from `inputs` (read in full), the input names
/// that are gone, and the map's keys. Absent or `undefined` entries count as gone, as in
/// the full read.
fn diff<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    key: Key,
    inputs: &[FieldMemo<'js>],
    sk: &Skeleton,
) -> ReadResult<(Vec<(String, Field)>, Vec<String>, Vec<OwnedAtom<'js>>)> {
    let name_of = key_name(key);
    let mut set = Vec::new();
    let mut seen = vec![false; inputs.len()];
    let mut keys = Vec::new();
    if let Some(v) = fixed(ctx, o, key, sk)? {
        let m = as_record(&v).map_err(|e| e.within(name_of))?;
        let mut next = 0;
        keys = own_keys(ctx, &m)?;
        for atom in &keys {
            let v: Value = get(ctx, &m, atom.raw)?;
            let Some(v) = present(v) else { continue };
            // Keys come back in the order they were set, so the next input is the usual match.
            let found = if inputs.get(next).is_some_and(|i| i.atom.raw == atom.raw) {
                Some(next)
            } else {
                inputs.iter().position(|i| i.atom.raw == atom.raw)
            };
            if let Some(i) = found {
                next = i + 1;
                seen[i] = true;
                if unchanged(ctx, &v, &inputs[i], sk)? {
                    continue;
                }
            }
            let name = atom.to_string()?;
            let f = field_from_js(&v).map_err(|e| e.within(&name).within(name_of))?;
            set.push((name, f));
        }
    }
    let mut removed = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if !seen[i] {
            removed.push(input.atom.to_string()?);
        }
    }
    Ok((set, removed, keys))
}

/// Whether a field still reads exactly as the event gave it: its `value` is the very string
/// the event was built with and it has no `multiValue` (those are read whole).
fn unchanged<'js>(
    ctx: &Ctx<'js>,
    v: &Value<'js>,
    input: &FieldMemo<'js>,
    sk: &Skeleton,
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
    let value: Value = sk.get(ctx, f, Key::Value)?;
    if value != input.value {
        return Ok(false);
    }
    let mv: Value = sk.get(ctx, f, Key::MultiValue)?;
    Ok(present(mv).is_none_or(|m| m.is_null()))
}
