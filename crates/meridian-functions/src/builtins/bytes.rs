//! Reading a byte array's contents from a native.

use rquickjs::TypedArray;

/// A byte array's contents (empty when detached), for natives that hash or encode them.
pub(crate) fn bytes<'a>(a: &'a TypedArray<'_, u8>) -> &'a [u8] {
    // SAFETY: natives only read the slice in Rust and run no JavaScript while it lives, so
    // nothing can detach or resize the buffer under it.
    unsafe { a.as_bytes() }.unwrap_or(&[])
}
