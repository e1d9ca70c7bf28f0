//! The viewer-request fast path: the event is built remembering the JS values it was made
//! of, and the handler's result is read back as changes against them.
//!
//! A typical function adds a header and rewrites the URI of a request with a dozen headers.
//! Reading the whole result back (every header converted to Rust strings, the request's
//! header map rebuilt from them) cost more than the handler itself. Here a value the
//! function left alone is recognised by identity (the same QuickJS string the event was
//! built with) and not read at all; only what differs is converted, with exactly the checks
//! and error messages of the full read in `convert.rs`.

use crate::convert::{as_record, field_from_js, map, string, ReadError, ReadResult};
use crate::event::{Cookies, Event, Field, QueryString, Request, Response};
use crate::raw::{self, Atom, Cx, Js};
use crate::skeleton::{Key, Skeleton, Slot};
use rquickjs::{Ctx, Object, Result as JsResult, Value};
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
    value: Js<'js>,
    /// Whether the event gave it a `multiValue` (those are always read back whole).
    multi: bool,
}

/// The JS values an event's request was built from.
pub(crate) struct RequestMemo<'js> {
    method: Js<'js>,
    uri: Js<'js>,
    querystring: Vec<FieldMemo<'js>>,
    headers: Vec<FieldMemo<'js>>,
    cookies: Vec<FieldMemo<'js>>,
}

/// Which of a request's maps a field belongs to.
#[derive(Clone, Copy)]
enum MapKind {
    Querystring,
    Headers,
    Cookies,
}

impl MapKind {
    fn key(self) -> Key {
        match self {
            MapKind::Querystring => Key::Querystring,
            MapKind::Headers => Key::Headers,
            MapKind::Cookies => Key::Cookies,
        }
    }

    fn name(self) -> &'static str {
        match self {
            MapKind::Querystring => "querystring",
            MapKind::Headers => "headers",
            MapKind::Cookies => "cookies",
        }
    }
}

/// `event` as `convert::event_to_js` builds it (same keys, same order), remembering the
/// request's values; keys, shapes and repeated strings come from the engine's `sk`.
pub(crate) fn event_to_js<'js>(
    ctx: &Ctx<'js>,
    ev: &Event,
    sk: &mut Skeleton,
) -> JsResult<(Value<'js>, RequestMemo<'js>)> {
    let cx = Cx::of(ctx);
    let o = cx.object()?;
    o.define(
        sk.atom(Key::Version),
        sk.text(cx, Slot::Version, &ev.version)?,
    )?;
    let c = cx.object()?;
    let head = &ev.context;
    c.define(
        sk.atom(Key::DistributionDomainName),
        sk.text(
            cx,
            Slot::DistributionDomainName,
            &head.distribution_domain_name,
        )?,
    )?;
    c.define(
        sk.atom(Key::DistributionId),
        sk.text(cx, Slot::DistributionId, &head.distribution_id)?,
    )?;
    c.define(
        sk.atom(Key::EventType),
        sk.text(cx, Slot::EventType, &head.event_type)?,
    )?;
    c.define(sk.atom(Key::RequestId), cx.string(&head.request_id)?)?;
    o.define(sk.atom(Key::Context), c)?;
    let v = cx.object()?;
    v.define(sk.atom(Key::Ip), sk.text(cx, Slot::Ip, &ev.viewer.ip)?)?;
    o.define(sk.atom(Key::Viewer), v)?;
    let r = &ev.request;
    let req = cx.object()?;
    let method = sk.text(cx, Slot::Method, &r.method)?;
    req.define(sk.atom(Key::Method), method.dup())?;
    let uri = sk.text(cx, Slot::Uri, &r.uri)?;
    req.define(sk.atom(Key::Uri), uri.dup())?;
    let q_atoms = r
        .querystring
        .keys()
        .map(|k| cx.atom(k))
        .collect::<JsResult<Vec<_>>>()?;
    let (q, querystring) = fields(cx, &r.querystring, q_atoms, sk, MapKind::Querystring)?;
    req.define(sk.atom(Key::Querystring), q)?;
    let names: Vec<&str> = r.headers.keys().map(String::as_str).collect();
    let h_atoms = sk.header_atoms(ctx, &names)?;
    let (h, headers) = fields(cx, &r.headers, h_atoms, sk, MapKind::Headers)?;
    req.define(sk.atom(Key::Headers), h)?;
    let k_atoms = r
        .cookies
        .keys()
        .map(|k| cx.atom(k))
        .collect::<JsResult<Vec<_>>>()?;
    let (k, cookies) = fields(cx, &r.cookies, k_atoms, sk, MapKind::Cookies)?;
    req.define(sk.atom(Key::Cookies), k)?;
    o.define(sk.atom(Key::Request), req)?;
    let memo = RequestMemo {
        method,
        uri,
        querystring,
        headers,
        cookies,
    };
    Ok((o.value(ctx), memo))
}

/// A map of fields, as `convert::fields_to_js` builds it, and what it was built from;
/// `atoms` are the map's keys, in order.
fn fields<'js>(
    cx: Cx<'js>,
    map: &BTreeMap<String, Field>,
    atoms: Vec<Atom<'js>>,
    sk: &mut Skeleton,
    kind: MapKind,
) -> JsResult<(Js<'js>, Vec<FieldMemo<'js>>)> {
    let o = cx.object()?;
    let mut out = Vec::with_capacity(map.len());
    for (i, (f, atom)) in map.values().zip(atoms).enumerate() {
        let fo = cx.object()?;
        let value = match kind {
            MapKind::Headers => sk.header_text(cx, i, &f.value)?,
            _ => cx.string(&f.value)?,
        };
        fo.define(sk.atom(Key::Value), value.dup())?;
        if let Some(mv) = &f.multi_value {
            let a = cx.array()?;
            for (i, m) in mv.iter().enumerate() {
                let mo = cx.object()?;
                mo.define(sk.atom(Key::Value), cx.string(&m.value)?)?;
                a.define_index(i as u32, mo)?;
            }
            fo.define(sk.atom(Key::MultiValue), a)?;
        }
        o.define(atom.raw(), fo)?;
        out.push(FieldMemo {
            atom,
            value,
            multi: f.multi_value.is_some(),
        });
    }
    Ok((o, out))
}

/// A property as `JSON.stringify` sees it (see `convert::prop`), by fixed key.
fn fixed<'js>(o: &Js<'js>, k: Key, sk: &Skeleton) -> ReadResult<Option<Js<'js>>> {
    Ok(o.get(sk.atom(k))?.present())
}

/// `v` as a record, with `convert::as_record`'s message when it is not one.
fn record<'js>(ctx: &Ctx<'js>, v: Js<'js>) -> ReadResult<Js<'js>> {
    if v.is_record() {
        return Ok(v);
    }
    as_record(&v.value(ctx))?;
    Err(ReadError::invalid("expected an object"))
}

/// The handler's request read as changes against `memo`; the same checks, in the same
/// order, as `convert::request_from_js`.
pub(crate) fn request_changes_from_js<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    memo: &RequestMemo<'js>,
    sk: &mut Skeleton,
) -> ReadResult<RequestChanges> {
    let cx = Cx::of(ctx);
    let o = record(ctx, cx.js(o.as_value()))?;
    match fixed(&o, Key::Method, sk)? {
        Some(v) if v.is(&memo.method) => {}
        Some(v) => {
            string(&v.value(ctx)).map_err(|e| e.within("method"))?;
        }
        None => return Err(ReadError::invalid("missing field `method`")),
    }
    let uri = match fixed(&o, Key::Uri, sk)? {
        Some(v) if v.is(&memo.uri) => None,
        Some(v) => Some(string(&v.value(ctx)).map_err(|e| e.within("uri"))?),
        None => return Err(ReadError::invalid("missing field `uri`")),
    };
    let querystring = whole_if_changed(ctx, &o, MapKind::Querystring, &memo.querystring, sk)?;
    let (headers_set, headers_removed) = diff(ctx, &o, MapKind::Headers, &memo.headers, sk)?;
    let cookies = whole_if_changed(ctx, &o, MapKind::Cookies, &memo.cookies, sk)?;
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
    ctx: &Ctx<'js>,
    o: &Js<'js>,
    kind: MapKind,
    inputs: &[FieldMemo<'js>],
    sk: &mut Skeleton,
) -> ReadResult<Option<BTreeMap<String, Field>>> {
    let (set, removed) = diff(ctx, o, kind, inputs, sk)?;
    if set.is_empty() && removed.is_empty() {
        return Ok(None);
    }
    map(&as_record(&o.value(ctx))?, kind.name(), field_from_js).map(Some)
}

/// Headers or other fields set or changed, as (name, field).
type FieldsSet = Vec<(String, Field)>;

/// Entries of the map of `kind` that differ from `inputs` (read in full), and the input
/// names that are gone. Absent or `undefined` entries count as gone, as in the full read.
/// For headers, the shapes of the returned keys are kept for the next request.
fn diff<'js>(
    ctx: &Ctx<'js>,
    o: &Js<'js>,
    kind: MapKind,
    inputs: &[FieldMemo<'js>],
    sk: &mut Skeleton,
) -> ReadResult<(FieldsSet, Vec<String>)> {
    let name_of = kind.name();
    let cx = Cx::of(ctx);
    let mut set = Vec::new();
    let mut seen = Seen::new(inputs.len());
    if let Some(v) = fixed(o, kind.key(), sk)? {
        let m = record(ctx, v).map_err(|e| e.within(name_of))?;
        let keys = m.own_keys()?;
        let mut next = 0;
        for atom in keys.atoms() {
            let Some(v) = m.get(atom)?.present() else {
                continue;
            };
            // Keys come back in the order they were set, so the next input is the usual match.
            let found = if inputs.get(next).is_some_and(|i| i.atom.raw() == atom) {
                Some(next)
            } else {
                inputs.iter().position(|i| i.atom.raw() == atom)
            };
            if let Some(i) = found {
                next = i + 1;
                seen.set(i);
                if unchanged(&v, &inputs[i], sk)? {
                    continue;
                }
            }
            let name = match sk.returned_name(atom) {
                Some(n) => n.to_owned(),
                None => raw::text(cx, atom)?,
            };
            let f = changed_field(ctx, &v, sk).map_err(|e| e.within(&name).within(name_of))?;
            set.push((name, f));
        }
        if let MapKind::Headers = kind {
            sk.keep_returned_headers(ctx, &keys)?;
        }
    }
    let mut removed = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        if !seen.has(i) {
            removed.push(input.atom.text()?);
        }
    }
    Ok((set, removed))
}

/// Which inputs a map still has: a bit each, on the heap only past 128 (a map of headers
/// has a dozen).
enum Seen {
    Few(u128),
    Many(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Seen {
        if n <= 128 {
            Seen::Few(0)
        } else {
            Seen::Many(vec![false; n])
        }
    }

    fn set(&mut self, i: usize) {
        match self {
            Seen::Few(bits) => *bits |= 1 << i,
            Seen::Many(v) => v[i] = true,
        }
    }

    fn has(&self, i: usize) -> bool {
        match self {
            Seen::Few(bits) => bits & (1 << i) != 0,
            Seen::Many(v) => v[i],
        }
    }
}

/// A field the function set, read directly when it is the usual `{ value: "..." }`;
/// anything else goes through `convert::field_from_js`, with its checks and messages.
fn changed_field<'js>(ctx: &Ctx<'js>, v: &Js<'js>, sk: &Skeleton) -> ReadResult<Field> {
    if v.is_record() {
        if let Some(value) = v.get(sk.atom(Key::Value))?.string() {
            let multi = v.get(sk.atom(Key::MultiValue))?.present();
            if multi.is_none_or(|m| m.is_null()) {
                return Ok(Field::new(value));
            }
        }
    }
    field_from_js(&v.value(ctx))
}

/// Whether a field still reads exactly as the event gave it: its `value` is the very string
/// the event was built with and it has no `multiValue` (those are read whole).
fn unchanged<'js>(v: &Js<'js>, input: &FieldMemo<'js>, sk: &Skeleton) -> ReadResult<bool> {
    if input.multi || !v.is_record() {
        return Ok(false);
    }
    if !v.get(sk.atom(Key::Value))?.is(&input.value) {
        return Ok(false);
    }
    Ok(v.get(sk.atom(Key::MultiValue))?
        .present()
        .is_none_or(|m| m.is_null()))
}
