//! Built-ins of the `cloudfront-js-2.0` runtime.
//!
//! Each module is a JS function expression `(function (N, M) {...})` called with `N`, an
//! object of native helpers, and `M`, the module table behind `require`. Natives never become
//! globals, so user code cannot call them directly.

pub(crate) mod buffer;
mod bytes;
pub(crate) mod cloudfront;
pub(crate) mod console;
pub(crate) mod crypto;
pub(crate) mod querystring;
pub(crate) mod regexp;

use crate::kvs::KeyValueStore;
use crate::limits::MAX_LOG_BYTES;
pub use cloudfront::OriginChange;
use rquickjs::{Ctx, Function, Object, Result};
use std::sync::{Arc, Mutex};

const RUNTIME_JS: &str = include_str!("runtime.js");

/// Captured `console` output of the current invocation.
#[derive(Debug, Default)]
pub(crate) struct LogBuf {
    pub lines: Vec<String>,
    pub bytes: usize,
    pub truncated: bool,
}

impl LogBuf {
    fn push(&mut self, line: String) {
        if self.bytes + line.len() > MAX_LOG_BYTES {
            if !self.truncated {
                self.truncated = true;
                self.lines.push("[log output truncated]".to_string());
            }
            return;
        }
        self.bytes += line.len();
        self.lines.push(line);
    }

    pub(crate) fn take(&mut self) -> Vec<String> {
        self.bytes = 0;
        self.truncated = false;
        std::mem::take(&mut self.lines)
    }
}

/// What natives share with the engine across invocations. All `Send` so the engine is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Host {
    pub logs: Arc<Mutex<LogBuf>>,
    pub origin: Arc<Mutex<Option<OriginChange>>>,
    pub kvs: Option<KeyValueStore>,
}

/// Locks ignore poisoning: the protected data is append-only per invocation and is reset
/// before each one, so a panic elsewhere cannot leave it inconsistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Install every built-in into the context's global object.
pub(crate) fn install(
    ctx: &Ctx<'_>,
    host: &Host,
    name: &str,
    kind: crate::limits::Kind,
) -> Result<()> {
    let n = Object::new(ctx.clone())?;
    n.set("kind", kind.event_type())?;
    n.set("name", name)?;
    let logs = host.logs.clone();
    n.set(
        "log",
        Function::new(ctx.clone(), move |line: String| lock(&logs).push(line))?,
    )?;
    n.set(
        "utf8Encode",
        Function::new(ctx.clone(), buffer::utf8_encode)?,
    )?;
    n.set(
        "utf8Decode",
        Function::new(ctx.clone(), buffer::utf8_decode)?,
    )?;
    n.set("b64Encode", Function::new(ctx.clone(), buffer::b64_encode)?)?;
    n.set("b64Decode", Function::new(ctx.clone(), buffer::b64_decode)?)?;
    n.set("hexEncode", Function::new(ctx.clone(), buffer::hex_encode)?)?;
    n.set("hexDecode", Function::new(ctx.clone(), buffer::hex_decode)?)?;
    n.set("digest", Function::new(ctx.clone(), crypto::js_digest)?)?;
    n.set("hmac", Function::new(ctx.clone(), crypto::js_hmac)?)?;
    n.set("kvsAttached", host.kvs.is_some())?;
    n.set("kvsId", host.kvs.as_ref().map(|k| k.id().to_string()))?;
    let kvs = host.kvs.clone();
    n.set(
        "kvsGet",
        Function::new(ctx.clone(), move |key: String| {
            kvs.as_ref().and_then(|k| k.get(&key))
        })?,
    )?;
    let kvs = host.kvs.clone();
    n.set(
        "kvsExists",
        Function::new(ctx.clone(), move |key: String| {
            kvs.as_ref().is_some_and(|k| k.exists(&key))
        })?,
    )?;
    let kvs = host.kvs.clone();
    n.set(
        "kvsMeta",
        Function::new(ctx.clone(), move || {
            kvs.as_ref()
                .and_then(|k| serde_json::to_string(&k.meta()).ok())
                .unwrap_or_default()
        })?,
    )?;
    let origin = host.origin.clone();
    n.set(
        "originChange",
        Function::new(ctx.clone(), move |method: String, json: String| {
            *lock(&origin) = OriginChange::from_js(&method, &json);
        })?,
    )?;
    let m = Object::new(ctx.clone())?;
    // Order matters: buffer first (others use M.buffer), runtime last (it freezes `require`).
    for src in [
        console::JS,
        buffer::JS,
        crypto::JS,
        querystring::JS,
        cloudfront::JS,
        RUNTIME_JS,
    ] {
        let f: Function = ctx.eval(src)?;
        f.call::<_, ()>((n.clone(), m.clone()))?;
    }
    Ok(())
}
