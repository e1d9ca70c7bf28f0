//! `RegExp.prototype.flags`, the getter every `replace`, `split` and `matchAll` with a
//! regular expression reads first.
//!
//! QuickJS's own getter looks six of its eight property names up from C strings on every
//! call (hashing each into an atom and releasing it again): measured on a PoP, a function
//! rewriting its URI with `replace` spent two fifths of the `replace` there. This getter does
//! the same reads, in the same order with the same conversions (ES2024 22.2.6.4), with atoms
//! made once per engine.

use crate::raw::Cx;
use rquickjs::{qjs, Ctx, Error, Result};

/// The flag properties in the order the specification reads them, with their letters.
const FLAGS: [(&str, u8); 8] = [
    ("hasIndices", b'd'),
    ("global", b'g'),
    ("ignoreCase", b'i'),
    ("multiline", b'm'),
    ("dotAll", b's'),
    ("unicode", b'u'),
    ("unicodeSets", b'v'),
    ("sticky", b'y'),
];

/// The atoms the getter reads with, owned by the engine; the context's opaque pointer
/// points at them once the getter is in place. Release with [`Flags::release`] inside the
/// context before it goes; dropping it releases too (a build that fails half way), so it
/// must be dropped before its context, as the engine's field order and closures ensure.
pub(crate) struct Flags {
    cx: *mut qjs::JSContext,
    atoms: Box<[qjs::JSAtom; 8]>,
}

// SAFETY: the atoms belong to the engine's own runtime and are only used inside
// `Context::with` on it; they move between threads only with the engine.
unsafe impl Send for Flags {}

impl Flags {
    /// Makes the atoms and replaces `RegExp.prototype.flags`'s getter.
    pub(crate) fn install(ctx: &Ctx<'_>) -> Result<Flags> {
        let cx = ctx.as_raw().as_ptr();
        let mut flags = Flags {
            cx,
            atoms: Box::new([qjs::JS_ATOM_NULL; 8]),
        };
        for (slot, (name, _)) in flags.atoms.iter_mut().zip(FLAGS) {
            *slot = Cx::of(ctx).atom(name)?.into_raw();
        }
        let proto: rquickjs::Object = ctx.eval("RegExp.prototype")?;
        // SAFETY: the box outlives every call of the getter that reads it: `release` (also
        // on drop) clears the pointer before the atoms go; without it the getter looks the
        // names up itself.
        unsafe {
            let getter = qjs::JS_NewCFunction2(
                cx,
                Some(get_flags),
                c"get flags".as_ptr(),
                0,
                qjs::JSCFunctionEnum_JS_CFUNC_generic,
                0,
            );
            if qjs::JS_IsException(getter) {
                return Err(Error::Exception);
            }
            // Takes the getter's reference; as the built-in, configurable, not enumerable.
            let name = qjs::JS_NewAtomLen(cx, c"flags".as_ptr(), 5);
            let rc = qjs::JS_DefinePropertyGetSet(
                cx,
                proto.as_value().as_raw(),
                name,
                getter,
                qjs::JS_UNDEFINED,
                qjs::JS_PROP_CONFIGURABLE as _,
            );
            qjs::JS_FreeAtom(cx, name);
            if rc < 0 {
                return Err(Error::Exception);
            }
            qjs::JS_SetContextOpaque(cx, flags.atoms.as_ptr() as *mut _);
        }
        Ok(flags)
    }

    /// Unhooks the getter's atoms and frees them; a second call does nothing.
    pub(crate) fn release(&mut self) {
        if self.atoms.iter().all(|a| *a == qjs::JS_ATOM_NULL) {
            return;
        }
        // SAFETY: the context is alive (see the type's docs); the getter falls back to
        // looking names up once the pointer is null; this owns one reference to each atom.
        unsafe {
            if qjs::JS_GetContextOpaque(self.cx) == self.atoms.as_ptr() as *mut _ {
                qjs::JS_SetContextOpaque(self.cx, std::ptr::null_mut());
            }
            for a in self.atoms.iter_mut() {
                if *a != qjs::JS_ATOM_NULL {
                    qjs::JS_FreeAtom(self.cx, *a);
                    *a = qjs::JS_ATOM_NULL;
                }
            }
        }
    }
}

impl Drop for Flags {
    fn drop(&mut self) {
        self.release();
    }
}

/// `get RegExp.prototype.flags`.
unsafe extern "C" fn get_flags(
    ctx: *mut qjs::JSContext,
    this: qjs::JSValue,
    _argc: std::ffi::c_int,
    _argv: *mut qjs::JSValue,
) -> qjs::JSValue {
    if qjs::JS_VALUE_GET_TAG(this) != qjs::JS_TAG_OBJECT {
        return qjs::JS_ThrowTypeError(ctx, c"not an object".as_ptr());
    }
    let atoms = qjs::JS_GetContextOpaque(ctx) as *const qjs::JSAtom;
    let mut out = [0u8; 8];
    let mut n = 0;
    for (i, (name, letter)) in FLAGS.iter().enumerate() {
        let v = if atoms.is_null() {
            let mut buf = [0u8; 16];
            buf[..name.len()].copy_from_slice(name.as_bytes());
            qjs::JS_GetPropertyStr(ctx, this, buf.as_ptr().cast())
        } else {
            qjs::JS_GetProperty(ctx, this, *atoms.add(i))
        };
        if qjs::JS_IsException(v) {
            return v;
        }
        let set = qjs::JS_ToBool(ctx, v);
        qjs::JS_FreeValue(ctx, v);
        if set < 0 {
            return qjs::JS_MKVAL(qjs::JS_TAG_EXCEPTION, 0);
        }
        if set > 0 {
            out[n] = *letter;
            n += 1;
        }
    }
    qjs::JS_NewStringLen(ctx, out.as_ptr().cast(), n as _)
}
