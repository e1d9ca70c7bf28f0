//! What an engine keeps across viewer-request invocations so that building the event and
//! reading the result back cost as little as the handler itself.
//!
//! Two costs dominated (measured with callgrind on a PoP, a handler that rewrites the URI and
//! adds a header): turning property names into atoms (a hash lookup per key, per request)
//! and giving each new object its shape. QuickJS shares a shape between objects only while
//! some object holds it, and the event of the previous request is gone by the time the next
//! is built, so every request built every shape anew (allocate, copy, rehash, per property).
//! Here the keys are atoms made once per engine, properties are defined directly (no
//! prototype walk: the event is plain data, as `JSON.parse` made it), and the engine holds
//! small objects with each prefix of the event's key sequences, which keeps those shapes
//! alive for the next request to find. It also keeps the strings of values that repeat
//! from one request to the next (see [`Text`]).

use crate::raw::{Atom, Cx, Js, Keys};
use rquickjs::{qjs, Array, Ctx, Error, Function, Object, Persistent, Result as JsResult, Value};

/// The fixed keys of the viewer event.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key {
    Version,
    Context,
    Viewer,
    Request,
    DistributionDomainName,
    DistributionId,
    EventType,
    RequestId,
    Ip,
    Method,
    Uri,
    Querystring,
    Headers,
    Cookies,
    Value,
    MultiValue,
    StatusCode,
    Handler,
}

const NAMES: [&str; KEYS] = [
    "version",
    "context",
    "viewer",
    "request",
    "distributionDomainName",
    "distributionId",
    "eventType",
    "requestId",
    "ip",
    "method",
    "uri",
    "querystring",
    "headers",
    "cookies",
    "value",
    "multiValue",
    "statusCode",
    "handler",
];

const KEYS: usize = 18;

/// The key sequences of the event's fixed objects, in the order they are built.
const SHAPES: [&[Key]; 5] = [
    &[Key::Version, Key::Context, Key::Viewer, Key::Request],
    &[
        Key::DistributionDomainName,
        Key::DistributionId,
        Key::EventType,
        Key::RequestId,
    ],
    &[Key::Ip],
    &[
        Key::Method,
        Key::Uri,
        Key::Querystring,
        Key::Headers,
        Key::Cookies,
    ],
    &[Key::Value, Key::MultiValue],
];

/// Header lists longer than this are not kept (building their prefixes costs quadratic time).
const MAX_KEPT_HEADERS: usize = 32;

/// Values longer than this are not kept for the next request: kept strings stay in the
/// function's memory between requests (at most a few KB with a few dozen headers).
const MAX_KEPT_TEXT: usize = 256;

/// The event's string slots whose last value is kept (see [`Text`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    Version,
    DistributionDomainName,
    DistributionId,
    EventType,
    Ip,
    Method,
    Uri,
}

const SLOTS: usize = 7;

/// The last value of a slot of the event, as text and as the JS string made for it: an equal
/// value in the next request reuses the string. Strings are immutable, so a function cannot
/// tell a shared one from a new one; most of an event (the distribution, the method, the
/// host and a client's other headers) repeats from one request to the next.
struct Text {
    text: String,
    js: qjs::JSValue,
}

/// The string for `s`, reusing `cell`'s when it holds the same text and keeping the new one
/// otherwise.
fn kept<'js>(cx: Cx<'js>, cell: &mut Option<Text>, s: &str) -> JsResult<Js<'js>> {
    if let Some(t) = cell.as_ref().filter(|t| t.text == s) {
        // SAFETY: a new reference to the kept string, owned by the caller.
        return unsafe { cx.own(qjs::JS_DupValue(cx.raw(), t.js)) };
    }
    let js = cx.string(s)?;
    if s.len() <= MAX_KEPT_TEXT {
        match cell {
            Some(t) => {
                // SAFETY: the skeleton held one reference to the old string.
                unsafe { qjs::JS_FreeValue(cx.raw(), t.js) };
                t.text.clear();
                t.text.push_str(s);
                t.js = js.dup().into_raw();
            }
            None => {
                *cell = Some(Text {
                    text: s.to_owned(),
                    js: js.dup().into_raw(),
                })
            }
        }
    }
    Ok(js)
}

fn release_text(cx: *mut qjs::JSContext, cell: &mut Option<Text>) {
    if let Some(t) = cell.take() {
        // SAFETY: the skeleton held one reference to the string.
        unsafe { qjs::JS_FreeValue(cx, t.js) }
    }
}

/// Defines `o[atom] = v` as a plain data property (as `JSON.parse` or an object literal).
pub(crate) fn define<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    atom: qjs::JSAtom,
    v: Value<'js>,
) -> JsResult<()> {
    let cx = Cx::of(ctx);
    cx.js(o.as_value()).define(atom, cx.js(&v))
}

/// Per-engine atoms, shape holders and kept strings. Release with [`Skeleton::release`]
/// inside the engine's context before the runtime goes.
pub(crate) struct Skeleton {
    atoms: [qjs::JSAtom; KEYS],
    /// Objects with every prefix of `SHAPES` (and the empty object).
    _fixed: Persistent<Array<'static>>,
    /// The last request's header names with their atoms (owned), and objects holding each
    /// prefix of that key sequence.
    header_names: Vec<(String, qjs::JSAtom)>,
    headers: Option<Persistent<Array<'static>>>,
    /// The header keys a function last returned, when they extend `header_names` (a function
    /// that adds a header), with objects holding the prefixes past `header_names`.
    returned: Vec<qjs::JSAtom>,
    /// The names of `returned` past `header_names` (the headers functions add), so reading
    /// one back does not convert its atom to text on every request.
    returned_names: Vec<(qjs::JSAtom, String)>,
    returned_holders: Option<Persistent<Array<'static>>>,
    /// The last value of each slot and of each of `header_names`' headers.
    texts: [Option<Text>; SLOTS],
    header_texts: Vec<Option<Text>>,
}

// SAFETY: as for the engine's entry point (`engine.rs`): the atoms, holders and strings
// belong to the engine's own runtime, are only used inside `Context::with` on it (which holds
// the runtime's lock), and move between threads only with the engine that owns the runtime.
unsafe impl Send for Skeleton {}

impl Skeleton {
    pub(crate) fn new(ctx: &Ctx<'_>) -> JsResult<Skeleton> {
        let mut atoms = [qjs::JS_ATOM_NULL; KEYS];
        for (i, name) in NAMES.iter().enumerate() {
            atoms[i] = Cx::of(ctx).atom(name)?.into_raw();
        }
        let holders = Array::new(ctx.clone())?;
        holders.set(0, Object::new(ctx.clone())?)?;
        for keys in SHAPES {
            let raw: Vec<qjs::JSAtom> = keys.iter().map(|k| atoms[*k as usize]).collect();
            prefixes(ctx, &holders, &raw, 1)?;
        }
        Ok(Skeleton {
            atoms,
            _fixed: Persistent::save(ctx, holders),
            header_names: Vec::new(),
            headers: None,
            returned: Vec::new(),
            returned_names: Vec::new(),
            returned_holders: None,
            texts: Default::default(),
            header_texts: Vec::new(),
        })
    }

    /// The atom of a fixed key (owned by the skeleton: do not free).
    pub(crate) fn atom(&self, k: Key) -> qjs::JSAtom {
        self.atoms[k as usize]
    }

    /// The global object's `handler`, read on every invocation (a function may replace it),
    /// to be called directly: the wrapper's frame in `runtime.js` cost as much as a short
    /// handler. None when it is not a function there: a top-level `let` or `const`
    /// handler is a binding, not a property, and the wrapper finds it by name.
    pub(crate) fn handler<'js>(&self, ctx: &Ctx<'js>) -> JsResult<Option<Function<'js>>> {
        let global = Cx::of(ctx).js(ctx.globals().as_value());
        Ok(global
            .get(self.atom(Key::Handler))?
            .value(ctx)
            .into_function())
    }

    /// Whether `o` has a fixed key, own or inherited (as `key in o`).
    pub(crate) fn has(&self, ctx: &Ctx<'_>, o: &Object<'_>, k: Key) -> JsResult<bool> {
        // SAFETY: plain query on a live object and atom.
        let rc = unsafe {
            qjs::JS_HasProperty(ctx.as_raw().as_ptr(), o.as_value().as_raw(), self.atom(k))
        };
        if rc < 0 {
            return Err(Error::Exception);
        }
        Ok(rc > 0)
    }

    /// The string for a slot's value, the last request's when it is the same.
    pub(crate) fn text<'js>(&mut self, cx: Cx<'js>, slot: Slot, s: &str) -> JsResult<Js<'js>> {
        kept(cx, &mut self.texts[slot as usize], s)
    }

    /// The string for the value of this request's `i`th header, the last request's when the
    /// header list and the value are the same.
    pub(crate) fn header_text<'js>(&mut self, cx: Cx<'js>, i: usize, s: &str) -> JsResult<Js<'js>> {
        match self.header_texts.get_mut(i) {
            Some(cell) => kept(cx, cell, s),
            None => cx.string(s),
        }
    }

    /// Keeps the shapes of the header keys a function returned when they extend this
    /// request's (a function adding a header builds them on every request otherwise).
    pub(crate) fn keep_returned_headers(&mut self, ctx: &Ctx<'_>, keys: &Keys<'_>) -> JsResult<()> {
        let n = self.header_names.len();
        if keys.len() <= n || keys.len() > MAX_KEPT_HEADERS {
            return Ok(());
        }
        let extends = self
            .header_names
            .iter()
            .zip(keys.atoms())
            .all(|((_, a), k)| *a == k);
        if !extends || self.returned.iter().copied().eq(keys.atoms()) {
            return Ok(());
        }
        let raw: Vec<qjs::JSAtom> = keys.atoms().collect();
        let holders = Array::new(ctx.clone())?;
        prefixes(ctx, &holders, &raw, n + 1)?;
        let cx = Cx::of(ctx);
        self.release_returned(cx.raw());
        for a in &raw {
            self.returned.push(Atom::dup(cx, *a).into_raw());
        }
        for a in &raw[n..] {
            self.returned_names.push((*a, crate::raw::text(cx, *a)?));
        }
        self.returned_holders = Some(Persistent::save(ctx, holders));
        Ok(())
    }

    /// The name of a header key a function added on an earlier request, if kept.
    pub(crate) fn returned_name(&self, atom: qjs::JSAtom) -> Option<&str> {
        self.returned_names
            .iter()
            .find(|(a, _)| *a == atom)
            .map(|(_, n)| n.as_str())
    }

    fn release_returned(&mut self, cx: *mut qjs::JSContext) {
        self.returned_names.clear();
        for a in self.returned.drain(..) {
            // SAFETY: the skeleton owns one reference to each kept returned atom.
            unsafe { qjs::JS_FreeAtom(cx, a) }
        }
        self.returned_holders = None;
    }

    /// The atoms for this request's header names (reusing the last request's where the
    /// names match), keeping the shapes of that key sequence alive when it changed.
    pub(crate) fn header_atoms<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        names: &[&str],
    ) -> JsResult<Vec<Atom<'js>>> {
        let cx = Cx::of(ctx);
        let mut out = Vec::with_capacity(names.len());
        let mut same = names.len() == self.header_names.len();
        for (i, name) in names.iter().enumerate() {
            match self.header_names.get(i) {
                Some((n, a)) if n == name => out.push(Atom::dup(cx, *a)),
                _ => {
                    same = false;
                    out.push(cx.atom(name)?);
                }
            }
        }
        if !same && out.len() <= MAX_KEPT_HEADERS {
            let holders = Array::new(ctx.clone())?;
            let raw: Vec<qjs::JSAtom> = out.iter().map(Atom::raw).collect();
            prefixes(ctx, &holders, &raw, 1)?;
            self.release_headers(cx.raw());
            for (name, a) in names.iter().zip(&out) {
                let kept = Atom::dup(cx, a.raw()).into_raw();
                self.header_names.push(((*name).to_owned(), kept));
                self.header_texts.push(None);
            }
            self.headers = Some(Persistent::save(ctx, holders));
        }
        Ok(out)
    }

    fn release_headers(&mut self, cx: *mut qjs::JSContext) {
        for (_, a) in self.header_names.drain(..) {
            // SAFETY: the skeleton owns one reference to each kept header atom.
            unsafe { qjs::JS_FreeAtom(cx, a) }
        }
        for t in &mut self.header_texts {
            release_text(cx, t);
        }
        self.header_texts.clear();
        self.headers = None;
        self.release_returned(cx);
    }

    /// Frees the atoms and strings; the holders go with their `Persistent`s.
    pub(crate) fn release(&mut self, ctx: &Ctx<'_>) {
        let cx = ctx.as_raw().as_ptr();
        self.release_headers(cx);
        for t in &mut self.texts {
            release_text(cx, t);
        }
        for a in &mut self.atoms {
            if *a != qjs::JS_ATOM_NULL {
                // SAFETY: the skeleton owns one reference to each fixed atom.
                unsafe { qjs::JS_FreeAtom(cx, *a) };
                *a = qjs::JS_ATOM_NULL;
            }
        }
    }
}

/// Pushes onto `holders` one object per prefix of `keys` at least `from` long, values
/// `undefined`.
fn prefixes<'js>(
    ctx: &Ctx<'js>,
    holders: &Array<'js>,
    keys: &[qjs::JSAtom],
    from: usize,
) -> JsResult<()> {
    for n in from..=keys.len() {
        let o = Object::new(ctx.clone())?;
        for k in &keys[..n] {
            define(ctx, &o, *k, Value::new_undefined(ctx.clone()))?;
        }
        holders.set(holders.len(), o)?;
    }
    Ok(())
}
