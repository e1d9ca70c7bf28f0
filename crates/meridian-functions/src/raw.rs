//! Owned QuickJS values and atoms for the viewer-request path, without rquickjs's
//! per-value context reference.
//!
//! That path builds and reads a dozen objects per request. An rquickjs `Value` also holds a
//! reference to its context, taken and released through QuickJS on every clone and drop,
//! which cost a tenth of the path's instructions. Here a value is its raw handle and the
//! context pointer. The `'js` lifetime ties both to the `Context::with` that made them,
//! which holds the runtime's lock, as rquickjs's own values are tied.

use rquickjs::{qjs, Ctx, Error, Result as JsResult, Value};
use std::marker::PhantomData;

/// The context of the current `Context::with`.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'js> {
    raw: *mut qjs::JSContext,
    _with: PhantomData<Ctx<'js>>,
}

impl<'js> Cx<'js> {
    pub(crate) fn of(ctx: &Ctx<'js>) -> Cx<'js> {
        Cx {
            raw: ctx.as_raw().as_ptr(),
            _with: PhantomData,
        }
    }

    pub(crate) fn raw(self) -> *mut qjs::JSContext {
        self.raw
    }

    /// Takes ownership of a value QuickJS returned (an exception becomes `Err`).
    ///
    /// # Safety
    /// `v` must be a value of this context that the caller owns.
    pub(crate) unsafe fn own(self, v: qjs::JSValue) -> JsResult<Js<'js>> {
        if qjs::JS_IsException(v) {
            return Err(Error::Exception);
        }
        Ok(Js { cx: self, v })
    }

    /// A new reference to what an rquickjs value holds (the bridge from the rquickjs side).
    pub(crate) fn js(self, v: &Value<'js>) -> Js<'js> {
        // SAFETY: a new reference to a live value of this context.
        let v = unsafe { qjs::JS_DupValue(self.raw, v.as_raw()) };
        Js { cx: self, v }
    }

    pub(crate) fn object(self) -> JsResult<Js<'js>> {
        // SAFETY: a new value, owned by the caller.
        unsafe { self.own(qjs::JS_NewObject(self.raw)) }
    }

    pub(crate) fn array(self) -> JsResult<Js<'js>> {
        // SAFETY: a new value, owned by the caller.
        unsafe { self.own(qjs::JS_NewArray(self.raw)) }
    }

    pub(crate) fn string(self, s: &str) -> JsResult<Js<'js>> {
        // SAFETY: pointer and length describe `s`; a new value, owned by the caller.
        unsafe {
            self.own(qjs::JS_NewStringLen(
                self.raw,
                s.as_ptr().cast(),
                s.len() as _,
            ))
        }
    }

    /// The atom for `name` (a new reference).
    pub(crate) fn atom(self, name: &str) -> JsResult<Atom<'js>> {
        // SAFETY: pointer and length describe `name`.
        let raw = unsafe { qjs::JS_NewAtomLen(self.raw, name.as_ptr().cast(), name.len() as _) };
        if raw == qjs::JS_ATOM_NULL {
            return Err(Error::Exception);
        }
        Ok(Atom { cx: self, raw })
    }
}

/// A value this code holds one reference to; released on drop.
pub(crate) struct Js<'js> {
    cx: Cx<'js>,
    v: qjs::JSValue,
}

impl<'js> Js<'js> {
    /// Gives the reference to the caller (QuickJS calls that take ownership).
    pub(crate) fn into_raw(self) -> qjs::JSValue {
        let v = self.v;
        std::mem::forget(self);
        v
    }

    pub(crate) fn dup(&self) -> Js<'js> {
        // SAFETY: a new reference to a live value.
        let v = unsafe { qjs::JS_DupValue(self.cx.raw, self.v) };
        Js { cx: self.cx, v }
    }

    /// The same value as rquickjs sees it (for the checks and messages of `convert.rs`).
    pub(crate) fn value(&self, ctx: &Ctx<'js>) -> Value<'js> {
        // SAFETY: the new reference is handed to the `Value`.
        unsafe { Value::from_raw(ctx.clone(), qjs::JS_DupValue(self.cx.raw, self.v)) }
    }

    fn tag(&self) -> i32 {
        // SAFETY: reads the tag of a live value.
        unsafe { qjs::JS_VALUE_GET_TAG(self.v) }
    }

    /// Whether both are the very same string or object (not merely equal text).
    pub(crate) fn is(&self, other: &Js<'js>) -> bool {
        // SAFETY: both are live; only reference-counted values compare their pointers.
        unsafe {
            self.tag() == other.tag()
                && qjs::JS_VALUE_HAS_REF_COUNT(self.v)
                && qjs::JS_VALUE_GET_PTR(self.v) == qjs::JS_VALUE_GET_PTR(other.v)
        }
    }

    /// The text of a string value; `None` for anything else, or text that is not valid
    /// UTF-8 (a lone surrogate), which the caller reads the slow way.
    pub(crate) fn string(&self) -> Option<String> {
        if self.tag() != qjs::JS_TAG_STRING {
            return None;
        }
        // SAFETY: the C string is freed before returning.
        unsafe {
            let mut len = 0;
            let p = qjs::JS_ToCStringLen(self.cx.raw, &mut len, self.v);
            if p.is_null() {
                return None;
            }
            let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len);
            let s = std::str::from_utf8(bytes).ok().map(str::to_owned);
            qjs::JS_FreeCString(self.cx.raw, p);
            s
        }
    }

    pub(crate) fn is_object(&self) -> bool {
        self.tag() == qjs::JS_TAG_OBJECT
    }

    pub(crate) fn is_null(&self) -> bool {
        self.tag() == qjs::JS_TAG_NULL
    }

    /// A plain record: an object that is neither an array nor a function.
    pub(crate) fn is_record(&self) -> bool {
        // SAFETY: type queries on a live value.
        self.is_object()
            && unsafe { !qjs::JS_IsArray(self.v) && !qjs::JS_IsFunction(self.cx.raw, self.v) }
    }

    /// What `JSON.stringify` would keep: not `undefined`, a function or a symbol (as
    /// `convert::present`).
    pub(crate) fn present(self) -> Option<Js<'js>> {
        let tag = self.tag();
        // SAFETY: a type query on a live value.
        let function =
            tag == qjs::JS_TAG_OBJECT && unsafe { qjs::JS_IsFunction(self.cx.raw, self.v) };
        if tag == qjs::JS_TAG_UNDEFINED || tag == qjs::JS_TAG_SYMBOL || function {
            None
        } else {
            Some(self)
        }
    }

    /// Defines `self[atom] = v` as a plain data property (as `JSON.parse` or an object
    /// literal: a setter on `Object.prototype` never runs).
    pub(crate) fn define(&self, atom: qjs::JSAtom, v: Js<'js>) -> JsResult<()> {
        // SAFETY: QuickJS takes the reference in `v`; the atom is live.
        let rc = unsafe {
            qjs::JS_DefinePropertyValue(
                self.cx.raw,
                self.v,
                atom,
                v.into_raw(),
                qjs::JS_PROP_C_W_E as _,
            )
        };
        if rc < 0 {
            return Err(Error::Exception);
        }
        Ok(())
    }

    /// Defines element `i` of an array.
    pub(crate) fn define_index(&self, i: u32, v: Js<'js>) -> JsResult<()> {
        // SAFETY: QuickJS takes the reference in `v`.
        let rc = unsafe {
            qjs::JS_DefinePropertyValueUint32(
                self.cx.raw,
                self.v,
                i,
                v.into_raw(),
                qjs::JS_PROP_C_W_E as _,
            )
        };
        if rc < 0 {
            return Err(Error::Exception);
        }
        Ok(())
    }

    /// `self[atom]`, running getters as a property read does.
    pub(crate) fn get(&self, atom: qjs::JSAtom) -> JsResult<Js<'js>> {
        // SAFETY: the result is a new reference, owned by the caller.
        unsafe { self.cx.own(qjs::JS_GetProperty(self.cx.raw, self.v, atom)) }
    }

    /// Own enumerable string keys, in property order (what `Object.keys` lists).
    pub(crate) fn own_keys(&self) -> JsResult<Keys<'js>> {
        let mut tab: *mut qjs::JSPropertyEnum = std::ptr::null_mut();
        let mut len: u32 = 0;
        let flags = (qjs::JS_GPN_STRING_MASK | qjs::JS_GPN_ENUM_ONLY) as _;
        // SAFETY: on success QuickJS fills `tab` with `len` entries, freed by `Keys`.
        let rc =
            unsafe { qjs::JS_GetOwnPropertyNames(self.cx.raw, &mut tab, &mut len, self.v, flags) };
        if rc < 0 {
            return Err(Error::Exception);
        }
        Ok(Keys {
            cx: self.cx,
            tab,
            len,
        })
    }
}

impl Drop for Js<'_> {
    fn drop(&mut self) {
        // SAFETY: this holds one reference.
        unsafe { qjs::JS_FreeValue(self.cx.raw, self.v) }
    }
}

/// An atom this code holds one reference to; released on drop.
pub(crate) struct Atom<'js> {
    cx: Cx<'js>,
    raw: qjs::JSAtom,
}

impl<'js> Atom<'js> {
    /// Takes a new reference to a live atom.
    pub(crate) fn dup(cx: Cx<'js>, raw: qjs::JSAtom) -> Atom<'js> {
        // SAFETY: `raw` is a live atom of this context's runtime.
        let raw = unsafe { qjs::JS_DupAtom(cx.raw, raw) };
        Atom { cx, raw }
    }

    pub(crate) fn raw(&self) -> qjs::JSAtom {
        self.raw
    }

    /// Gives the reference to the caller.
    pub(crate) fn into_raw(self) -> qjs::JSAtom {
        let a = self.raw;
        std::mem::forget(self);
        a
    }

    /// The atom's text.
    pub(crate) fn text(&self) -> JsResult<String> {
        text(self.cx, self.raw)
    }
}

impl Drop for Atom<'_> {
    fn drop(&mut self) {
        // SAFETY: this holds one reference.
        unsafe { qjs::JS_FreeAtom(self.cx.raw, self.raw) }
    }
}

/// An atom's text.
pub(crate) fn text(cx: Cx<'_>, atom: qjs::JSAtom) -> JsResult<String> {
    // SAFETY: the atom is live; the C string is freed before returning.
    unsafe {
        let mut len = 0;
        let p = qjs::JS_AtomToCStringLen(cx.raw, &mut len, atom);
        if p.is_null() {
            return Err(Error::Exception);
        }
        let bytes = std::slice::from_raw_parts(p.cast::<u8>(), len as usize);
        let s = String::from_utf8_lossy(bytes).into_owned();
        qjs::JS_FreeCString(cx.raw, p);
        Ok(s)
    }
}

/// An object's own keys, as QuickJS listed them; released on drop.
pub(crate) struct Keys<'js> {
    cx: Cx<'js>,
    tab: *mut qjs::JSPropertyEnum,
    len: u32,
}

impl Keys<'_> {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// The atoms, valid while `self` lives.
    pub(crate) fn atoms(&self) -> impl ExactSizeIterator<Item = qjs::JSAtom> + '_ {
        let entries: &[qjs::JSPropertyEnum] = if self.tab.is_null() {
            &[]
        } else {
            // SAFETY: QuickJS filled `len` entries at `tab`.
            unsafe { std::slice::from_raw_parts(self.tab, self.len as usize) }
        };
        entries.iter().map(|e| e.atom)
    }
}

impl Drop for Keys<'_> {
    fn drop(&mut self) {
        if !self.tab.is_null() {
            // SAFETY: the table and its atoms came from `JS_GetOwnPropertyNames`.
            unsafe { qjs::JS_FreePropertyEnum(self.cx.raw, self.tab, self.len) }
        }
    }
}
