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
//! alive for the next request to find.

use rquickjs::{qjs, Array, Ctx, Error, Object, Persistent, Result as JsResult, Value};

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
];

const KEYS: usize = 17;

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

/// An atom this code owns a reference to; freed on drop.
pub(crate) struct OwnedAtom<'js> {
    ctx: Ctx<'js>,
    pub(crate) raw: qjs::JSAtom,
}

impl<'js> OwnedAtom<'js> {
    /// Takes a new reference to `raw`.
    pub(crate) fn dup(ctx: &Ctx<'js>, raw: qjs::JSAtom) -> OwnedAtom<'js> {
        // SAFETY: `raw` is a live atom of this context's runtime.
        let raw = unsafe { qjs::JS_DupAtom(ctx.as_raw().as_ptr(), raw) };
        OwnedAtom {
            ctx: ctx.clone(),
            raw,
        }
    }

    pub(crate) fn new(ctx: &Ctx<'js>, name: &str) -> JsResult<OwnedAtom<'js>> {
        Ok(OwnedAtom {
            ctx: ctx.clone(),
            raw: new_atom(ctx, name)?,
        })
    }

    /// The atom's text.
    pub(crate) fn to_string(&self) -> JsResult<String> {
        let ctx = self.ctx.as_raw().as_ptr();
        // SAFETY: the atom is live; the C string is freed before returning.
        unsafe {
            let p = qjs::JS_AtomToCStringLen(ctx, std::ptr::null_mut(), self.raw);
            if p.is_null() {
                return Err(Error::Exception);
            }
            let s = std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned();
            qjs::JS_FreeCString(ctx, p);
            Ok(s)
        }
    }
}

impl Drop for OwnedAtom<'_> {
    fn drop(&mut self) {
        // SAFETY: this holds one reference to the atom.
        unsafe { qjs::JS_FreeAtom(self.ctx.as_raw().as_ptr(), self.raw) }
    }
}

fn new_atom(ctx: &Ctx<'_>, name: &str) -> JsResult<qjs::JSAtom> {
    // SAFETY: pointer and length describe `name`.
    let a =
        unsafe { qjs::JS_NewAtomLen(ctx.as_raw().as_ptr(), name.as_ptr().cast(), name.len() as _) };
    if a == qjs::JS_ATOM_NULL {
        return Err(Error::Exception);
    }
    Ok(a)
}

/// Defines `o[atom] = v` as a plain data property (as `JSON.parse` or an object literal).
pub(crate) fn define<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    atom: qjs::JSAtom,
    v: Value<'js>,
) -> JsResult<()> {
    let c = ctx.as_raw().as_ptr();
    // SAFETY: a new reference for QuickJS, which takes it (`v`, and the context reference it
    // holds, are released as usual); the atom is live.
    let rc = unsafe {
        let raw = qjs::JS_DupValue(c, v.as_raw());
        drop(v);
        qjs::JS_DefinePropertyValue(c, o.as_value().as_raw(), atom, raw, qjs::JS_PROP_C_W_E as _)
    };
    if rc < 0 {
        return Err(Error::Exception);
    }
    Ok(())
}

/// `o[atom]`, running getters as a property read does.
pub(crate) fn get<'js>(ctx: &Ctx<'js>, o: &Object<'js>, atom: qjs::JSAtom) -> JsResult<Value<'js>> {
    // SAFETY: the returned value is owned and handed to `Value`.
    let v = unsafe {
        let raw = qjs::JS_GetProperty(ctx.as_raw().as_ptr(), o.as_value().as_raw(), atom);
        Value::from_raw(ctx.clone(), raw)
    };
    if v.is_exception() {
        return Err(Error::Exception);
    }
    Ok(v)
}

/// Own enumerable string keys of `o`, in property order (what `Object.keys` lists).
pub(crate) fn own_keys<'js>(ctx: &Ctx<'js>, o: &Object<'js>) -> JsResult<Vec<OwnedAtom<'js>>> {
    let c = ctx.as_raw().as_ptr();
    let mut tab: *mut qjs::JSPropertyEnum = std::ptr::null_mut();
    let mut len: u32 = 0;
    let flags = (qjs::JS_GPN_STRING_MASK | qjs::JS_GPN_ENUM_ONLY) as _;
    // SAFETY: QuickJS fills `tab` with `len` entries, freed below after duplicating the atoms.
    unsafe {
        if qjs::JS_GetOwnPropertyNames(c, &mut tab, &mut len, o.as_value().as_raw(), flags) < 0 {
            return Err(Error::Exception);
        }
        let entries = std::slice::from_raw_parts(tab, len as usize);
        let out = entries
            .iter()
            .map(|e| OwnedAtom::dup(ctx, e.atom))
            .collect();
        qjs::JS_FreePropertyEnum(c, tab, len);
        Ok(out)
    }
}

/// Per-engine atoms and shape holders. Release with [`Skeleton::release`] inside the
/// engine's context before the runtime goes.
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
    returned_holders: Option<Persistent<Array<'static>>>,
}

// SAFETY: as for the engine's entry point (`engine.rs`): the atoms and holders belong to the
// engine's own runtime, are only used inside `Context::with` on it (which holds the
// runtime's lock), and move between threads only with the engine that owns the runtime.
unsafe impl Send for Skeleton {}

impl Skeleton {
    pub(crate) fn new(ctx: &Ctx<'_>) -> JsResult<Skeleton> {
        let mut atoms = [qjs::JS_ATOM_NULL; KEYS];
        for (i, name) in NAMES.iter().enumerate() {
            atoms[i] = new_atom(ctx, name)?;
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
            returned_holders: None,
        })
    }

    /// The atom of a fixed key (owned by the skeleton: do not free).
    pub(crate) fn atom(&self, k: Key) -> qjs::JSAtom {
        self.atoms[k as usize]
    }

    /// Defines a fixed key.
    pub(crate) fn put<'js>(
        &self,
        ctx: &Ctx<'js>,
        o: &Object<'js>,
        k: Key,
        v: impl rquickjs::IntoJs<'js>,
    ) -> JsResult<()> {
        define(ctx, o, self.atom(k), v.into_js(ctx)?)
    }

    /// Reads a fixed key.
    pub(crate) fn get<'js>(&self, ctx: &Ctx<'js>, o: &Object<'js>, k: Key) -> JsResult<Value<'js>> {
        get(ctx, o, self.atom(k))
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

    /// Keeps the shapes of the header keys a function returned when they extend this
    /// request's (a function adding a header builds them on every request otherwise).
    pub(crate) fn keep_returned_headers(
        &mut self,
        ctx: &Ctx<'_>,
        keys: &[OwnedAtom<'_>],
    ) -> JsResult<()> {
        let n = self.header_names.len();
        if keys.len() <= n || keys.len() > MAX_KEPT_HEADERS {
            return Ok(());
        }
        let extends = self
            .header_names
            .iter()
            .zip(keys)
            .all(|((_, a), k)| *a == k.raw);
        let same = self.returned.len() == keys.len()
            && self.returned.iter().zip(keys).all(|(a, k)| *a == k.raw);
        if !extends || same {
            return Ok(());
        }
        let holders = Array::new(ctx.clone())?;
        let raw: Vec<qjs::JSAtom> = keys.iter().map(|a| a.raw).collect();
        prefixes(ctx, &holders, &raw, n + 1)?;
        self.release_returned(ctx);
        for a in &raw {
            // SAFETY: a new reference for the skeleton, freed in `release_returned`.
            self.returned
                .push(unsafe { qjs::JS_DupAtom(ctx.as_raw().as_ptr(), *a) });
        }
        self.returned_holders = Some(Persistent::save(ctx, holders));
        Ok(())
    }

    fn release_returned(&mut self, ctx: &Ctx<'_>) {
        for a in self.returned.drain(..) {
            // SAFETY: the skeleton owns one reference to each kept returned atom.
            unsafe { qjs::JS_FreeAtom(ctx.as_raw().as_ptr(), a) }
        }
        self.returned_holders = None;
    }

    /// The atoms for this request's header names (reusing the last request's where the
    /// names match), keeping the shapes of that key sequence alive when it changed.
    pub(crate) fn header_atoms<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        names: &[&str],
    ) -> JsResult<Vec<OwnedAtom<'js>>> {
        let mut out = Vec::with_capacity(names.len());
        let mut same = names.len() == self.header_names.len();
        for (i, name) in names.iter().enumerate() {
            match self.header_names.get(i) {
                Some((n, a)) if n == name => out.push(OwnedAtom::dup(ctx, *a)),
                _ => {
                    same = false;
                    out.push(OwnedAtom::new(ctx, name)?);
                }
            }
        }
        if !same && out.len() <= MAX_KEPT_HEADERS {
            let holders = Array::new(ctx.clone())?;
            let raw: Vec<qjs::JSAtom> = out.iter().map(|a| a.raw).collect();
            prefixes(ctx, &holders, &raw, 1)?;
            self.release_headers(ctx);
            for (name, a) in names.iter().zip(&out) {
                // SAFETY: a new reference for the skeleton, freed in `release_headers`.
                let raw = unsafe { qjs::JS_DupAtom(ctx.as_raw().as_ptr(), a.raw) };
                self.header_names.push(((*name).to_owned(), raw));
            }
            self.headers = Some(Persistent::save(ctx, holders));
        }
        Ok(out)
    }

    fn release_headers(&mut self, ctx: &Ctx<'_>) {
        for (_, a) in self.header_names.drain(..) {
            // SAFETY: the skeleton owns one reference to each kept header atom.
            unsafe { qjs::JS_FreeAtom(ctx.as_raw().as_ptr(), a) }
        }
        self.headers = None;
        self.release_returned(ctx);
    }

    /// Frees the atoms; the holders go with their `Persistent`s.
    pub(crate) fn release(&mut self, ctx: &Ctx<'_>) {
        self.release_headers(ctx);
        for a in &mut self.atoms {
            if *a != qjs::JS_ATOM_NULL {
                // SAFETY: the skeleton owns one reference to each fixed atom.
                unsafe { qjs::JS_FreeAtom(ctx.as_raw().as_ptr(), *a) };
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
