//! The engine: one QuickJS runtime + context with the function already evaluated, invoked
//! many times.
//!
//! # Threading
//!
//! `Engine` is `Send` but not `Sync` (rquickjs is built with its `parallel` feature, which
//! puts the runtime behind a lock). Hold one engine per worker, or share an
//! [`crate::EnginePool`] between tasks: an invocation is synchronous and bounded by the CPU
//! budget (1 ms for viewer functions), so calling it directly from async code is fine for
//! viewer functions; run origin hooks (seconds of budget) under `spawn_blocking`.

use crate::builtins::{self, lock, Host, OriginChange};
use crate::code::FunctionCode;
use crate::convert::{self, ReadError};
use crate::diff::{self, Changes};
use crate::error::{CompileError, ErrorKind, ExecutionError};
use crate::event::{Event, Outcome, Response};
use crate::kvs::KeyValueStore;
use crate::lambda::{LambdaEvent, LambdaResponse, OriginOutcome};
use crate::limits::{utilization, BudgetClock, Kind, Limits, MemoryMeter, MeteredAllocator};
use crate::skeleton::{Key, Skeleton};
use rquickjs::context::EvalOptions;
use rquickjs::{qjs, Context, Ctx, Function, Object, Runtime, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How an engine is configured.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub limits: Limits,
    /// The key value store associated with the function (CloudFront allows one).
    pub kvs: Option<KeyValueStore>,
}

impl EngineOptions {
    /// CloudFront's default limits for the kind, no key value store.
    pub fn for_kind(kind: Kind) -> EngineOptions {
        EngineOptions {
            limits: Limits::for_kind(kind),
            kvs: None,
        }
    }

    /// Same options with a store attached.
    pub fn with_kvs(mut self, kvs: KeyValueStore) -> EngineOptions {
        self.kvs = Some(kvs);
        self
    }

    /// Same options with other limits.
    pub fn with_limits(mut self, limits: Limits) -> EngineOptions {
        self.limits = limits;
        self
    }
}

/// A successful invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation<T> {
    /// What the function returned.
    pub output: T,
    /// Origin change requested through the `cloudfront` module (viewer-request only).
    pub origin_change: Option<OriginChange>,
    /// Captured `console.log` lines.
    pub logs: Vec<String>,
    /// CPU time as a percentage of the budget, 0-100 (CloudFront's compute utilization).
    pub compute_utilization: u8,
    /// Time used: CPU time when `cpu_measured`, else the elapsed time (the thread's CPU
    /// clock is a system call, so only one invocation in `CPU_SAMPLE` reads it).
    pub cpu_time: Duration,
    /// Whether `cpu_time` is the thread's CPU time (metrics should record only these).
    pub cpu_measured: bool,
}

/// One invocation in this many reads the thread's CPU clock at start and end.
const CPU_SAMPLE: u64 = 16;

/// The handler's entry point kept across invocations.
struct InvokeFn(rquickjs::Persistent<Function<'static>>);

// SAFETY: the function belongs to the engine's own runtime, which is `Send` (rquickjs's
// `parallel` feature); it is only restored inside `Context::with` on that runtime, which
// holds the runtime's lock, and it moves between threads only together with the engine
// that owns runtime, context and function (the engine is not `Sync`).
unsafe impl Send for InvokeFn {}

struct State {
    // Field order: the handler's entry point, then the context, before the runtime.
    /// `__meridian_invoke`, looked up once rather than on every invocation.
    invoke: InvokeFn,
    /// The viewer event's atoms and shapes, kept across invocations.
    skel: Skeleton,
    /// The atoms of `RegExp.prototype.flags`'s getter.
    flags: builtins::regexp::Flags,
    ctx: Context,
    /// Kept so the runtime lives exactly as long as this state (the context holds a handle
    /// too, but being explicit documents ownership).
    _rt: Runtime,
    meter: Arc<MemoryMeter>,
}

impl Drop for State {
    fn drop(&mut self) {
        let (skel, flags) = (&mut self.skel, &mut self.flags);
        self.ctx.with(|ctx| {
            skel.release(&ctx);
            flags.release();
        });
    }
}

/// An engine for one function. See the module docs for how to hold it.
pub struct Engine {
    code: FunctionCode,
    opts: EngineOptions,
    host: Host,
    clock: Arc<BudgetClock>,
    interrupted: Arc<AtomicBool>,
    /// `None` after an out-of-memory or timeout: rebuilt before the next invocation, because
    /// QuickJS gives no guarantee the heap is consistent after an allocation failure.
    state: Option<State>,
    rebuilds: u64,
    invocations: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("function", &self.code.name())
            .field("rebuilds", &self.rebuilds)
            .finish()
    }
}

/// Turn the pending exception into "Name: message".
fn describe(ctx: &Ctx<'_>) -> String {
    let v = ctx.catch();
    if let Some(obj) = v.as_object() {
        let name: Option<String> = obj.get("name").ok();
        let msg: Option<String> = obj.get("message").ok();
        if let Some(msg) = msg {
            return match name {
                Some(n) if !n.is_empty() => format!("{n}: {msg}"),
                _ => msg,
            };
        }
    }
    if let Some(s) = v.as_string().and_then(|s| s.to_string().ok()) {
        return s;
    }
    match ctx.json_stringify(v) {
        Ok(Some(s)) => s.to_string().unwrap_or_default(),
        _ => "uncaught exception".to_string(),
    }
}

/// Syntax error position from QuickJS's stack line `at <file>:LINE:COL`.
fn syntax_position(ctx: &Ctx<'_>, exc: &Value<'_>) -> (u32, u32) {
    let _ = ctx;
    let stack: String = exc
        .as_object()
        .and_then(|o| o.get("stack").ok())
        .unwrap_or_default();
    for line in stack.lines() {
        let mut parts = line.trim().rsplitn(3, ':');
        let col = parts
            .next()
            .and_then(|c| c.trim_end_matches(')').parse().ok());
        let ln = parts.next().and_then(|l| l.parse().ok());
        if let (Some(l), Some(c)) = (ln, col) {
            return (l, c);
        }
    }
    (0, 0)
}

impl Engine {
    /// Build an engine for `code`. Costs a runtime, the built-ins and the function's top-level
    /// code (well under a millisecond in release builds): do it per worker, not per request.
    pub fn new(code: &FunctionCode, opts: EngineOptions) -> Result<Engine, CompileError> {
        Engine::build_checked(code, &opts)
    }

    pub(crate) fn build_checked(
        code: &FunctionCode,
        opts: &EngineOptions,
    ) -> Result<Engine, CompileError> {
        let mut engine = Engine {
            code: code.clone(),
            opts: opts.clone(),
            host: Host {
                kvs: opts.kvs.clone(),
                ..Host::default()
            },
            clock: Arc::new(BudgetClock::default()),
            interrupted: Arc::new(AtomicBool::new(false)),
            state: None,
            rebuilds: 0,
            invocations: 0,
        };
        engine.state = Some(engine.build()?);
        Ok(engine)
    }

    fn build(&self) -> Result<State, CompileError> {
        let name = self.code.name().to_string();
        let rt_err = |e: rquickjs::Error| CompileError::Runtime {
            name: name.clone(),
            message: e.to_string(),
        };
        // A fresh meter per runtime: the old runtime's blocks are all freed when it drops.
        let meter = Arc::new(MemoryMeter::default());
        meter.set_limit(
            self.opts
                .limits
                .memory_bytes
                .saturating_add(16 * 1024 * 1024),
        );
        let rt = Runtime::new_with_alloc(MeteredAllocator::new(meter.clone())).map_err(rt_err)?;
        rt.set_max_stack_size(256 * 1024);
        let (clock, flag, mem) = (self.clock.clone(), self.interrupted.clone(), meter.clone());
        rt.set_interrupt_handler(Some(Box::new(move || {
            if mem.refused() {
                return true;
            }
            if clock.over_budget() {
                flag.store(true, Ordering::Relaxed);
                return true;
            }
            false
        })));
        let ctx = Context::full(&rt).map_err(rt_err)?;
        // Top-level code gets the invocation budget (at least 200 ms: it runs once).
        let init_budget = self.opts.limits.cpu_budget.max(Duration::from_millis(200));
        self.interrupted.store(false, Ordering::Relaxed);
        self.clock.start(init_budget, true);
        let kind = self.code.kind();
        let result = ctx.with(|ctx| -> Result<(InvokeFn, Skeleton, builtins::regexp::Flags), CompileError> {
            let init = |ctx: &Ctx<'_>| CompileError::Init { name: name.clone(), message: describe(ctx) };
            builtins::install(&ctx, &self.host, &name, kind).map_err(|_| init(&ctx))?;
            let flags = builtins::regexp::Flags::install(&ctx).map_err(|_| init(&ctx))?;
            let mut eo = EvalOptions::default();
            eo.global = true;
            eo.strict = false;
            eo.backtrace_barrier = true;
            if let Err(e) = ctx.eval_with_options::<(), _>(self.code.source(), eo) {
                if !matches!(e, rquickjs::Error::Exception) {
                    return Err(CompileError::Init { name: name.clone(), message: e.to_string() });
                }
                let exc = ctx.catch();
                let is_syntax = exc
                    .as_object()
                    .and_then(|o| o.get::<_, String>("name").ok())
                    .is_some_and(|n| n == "SyntaxError");
                if is_syntax {
                    let (line, column) = syntax_position(&ctx, &exc);
                    let message: String = exc.as_object().and_then(|o| o.get("message").ok()).unwrap_or_default();
                    // QuickJS names the end of the code as an empty token.
                    let message = match message.strip_suffix(": ''") {
                        Some(what) => format!("{what}: the code ends here (a closing }}, ) or ] may be missing)"),
                        None => message,
                    };
                    return Err(CompileError::Syntax { name: name.clone(), message, line, column });
                }
                let _ = ctx.throw(exc);
                return Err(init(&ctx));
            }
            let check = if kind.is_viewer() {
                "typeof handler === 'function'"
            } else {
                "typeof module === 'object' && module.exports !== null && typeof module.exports.handler === 'function'"
            };
            let ok: bool = ctx.eval(check).map_err(|_| init(&ctx))?;
            if !ok {
                let what = if kind.is_viewer() { "function handler(event)" } else { "exports.handler" };
                return Err(CompileError::Init { name: name.clone(), message: format!("the code does not define {what}") });
            }
            let invoke: Function = ctx.globals().get("__meridian_invoke").map_err(|_| init(&ctx))?;
            let skel = Skeleton::new(&ctx).map_err(|_| init(&ctx))?;
            Ok((InvokeFn(rquickjs::Persistent::save(&ctx, invoke)), skel, flags))
        });
        self.clock.stop();
        if self.interrupted.swap(false, Ordering::Relaxed) {
            return Err(CompileError::Init {
                name,
                message: "top-level code exceeded the CPU budget".into(),
            });
        }
        let (invoke, skel, flags) = result?;
        // The function's allowance is on top of what the runtime and built-ins already use,
        // so the 2 MB CloudFront figure means memory for the function itself.
        meter.set_limit(meter.used().saturating_add(self.opts.limits.memory_bytes));
        meter.take_refused();
        lock(&self.host.logs).take();
        Ok(State {
            invoke,
            skel,
            flags,
            ctx,
            _rt: rt,
            meter,
        })
    }

    /// The function this engine runs.
    pub fn code(&self) -> &FunctionCode {
        &self.code
    }

    /// How often the engine was rebuilt after an out-of-memory or timeout.
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// Bytes the JS heap currently uses (runtime, built-ins and the function's data).
    pub fn memory_used(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.meter.used())
    }

    fn expect_kind(&self, kinds: &[Kind]) -> Result<(), ExecutionError> {
        if kinds.contains(&self.code.kind()) {
            return Ok(());
        }
        Err(ExecutionError::new(
            ErrorKind::InvalidEvent,
            format!(
                "function {} is a {} function",
                self.code.name(),
                self.code.kind()
            ),
        ))
    }

    /// Run a viewer-request function.
    pub fn viewer_request(&mut self, event: &Event) -> Result<Invocation<Outcome>, ExecutionError> {
        self.expect_kind(&[Kind::ViewerRequest])?;
        let max_body = self.opts.limits.max_body_bytes;
        self.run(
            "statusCode",
            |ctx| convert::event_to_js(ctx, event),
            |_, out, is_response| {
                if is_response {
                    let r = convert::response_from_js(out)?;
                    check_body(r.body_len(), max_body)?;
                    Ok(Outcome::Response(r))
                } else {
                    Ok(Outcome::Request(convert::request_from_js(out)?))
                }
            },
        )
    }

    /// Run a viewer-request function and read its request back as changes to the event's
    /// (the edge's hot path: what the function left alone is not converted back).
    pub fn viewer_request_changes(
        &mut self,
        event: &Event,
    ) -> Result<Invocation<Changes>, ExecutionError> {
        self.expect_kind(&[Kind::ViewerRequest])?;
        let max_body = self.opts.limits.max_body_bytes;
        self.invoke(|ctx, invoke, sk| {
            let js_err = |e| js_error(ctx, e);
            let (ev, memo) = diff::event_to_js(ctx, event, sk).map_err(js_err)?;
            let handler = match sk.handler(ctx).map_err(js_err)? {
                Some(f) => f,
                None => invoke.clone().restore(ctx).map_err(js_err)?,
            };
            let out = call(ctx, handler, ev)?;
            // As `is_response`: a failing lookup (a throwing proxy) reads as a request.
            let response = sk.has(ctx, &out, Key::StatusCode).unwrap_or(false);
            let read = if response {
                convert::response_from_js(&out).and_then(|r| {
                    check_body(r.body_len(), max_body)?;
                    Ok(Changes::Response(r))
                })
            } else {
                diff::request_changes_from_js(ctx, &out, &memo, sk).map(Changes::Request)
            };
            read.map_err(|e| read_error(ctx, e))
        })
    }

    /// Run a viewer-response function.
    pub fn viewer_response(
        &mut self,
        event: &Event,
    ) -> Result<Invocation<Response>, ExecutionError> {
        self.expect_kind(&[Kind::ViewerResponse])?;
        let max_body = self.opts.limits.max_body_bytes;
        self.run(
            "statusCode",
            |ctx| convert::event_to_js(ctx, event),
            |_, out, is_response| {
                if !is_response {
                    return Err(ReadError::Output(
                        "a viewer-response function must return a response".into(),
                    ));
                }
                let r = convert::response_from_js(out)?;
                check_body(r.body_len(), max_body)?;
                Ok(r)
            },
        )
    }

    /// Run an origin-request or origin-response hook. Not per-request hot, so it keeps the
    /// JSON round trip (the Lambda shapes carry free-form JSON such as `origin`).
    pub fn origin(
        &mut self,
        event: &LambdaEvent,
    ) -> Result<Invocation<OriginOutcome>, ExecutionError> {
        self.expect_kind(&[Kind::OriginRequest, Kind::OriginResponse])?;
        let json = serde_json::to_string(event)
            .map_err(|e| ExecutionError::new(ErrorKind::InvalidEvent, e.to_string()))?;
        let max_body = self.opts.limits.max_body_bytes;
        let must_respond = self.code.kind() == Kind::OriginResponse;
        self.run(
            "status",
            |ctx| ctx.json_parse(json.as_str()),
            |ctx, out, is_response| {
                let json = stringify(ctx, out)?;
                if is_response {
                    let r: LambdaResponse = parse_output(&json)?;
                    check_body(r.body.as_ref().map_or(0, String::len), max_body)?;
                    Ok(OriginOutcome::Response(r))
                } else if must_respond {
                    Err(ReadError::Output(
                        "an origin-response function must return a response".into(),
                    ))
                } else {
                    Ok(OriginOutcome::Request(parse_output(&json)?))
                }
            },
        )
    }

    /// One invocation. `event` builds the handler's argument and `read` turns its result
    /// into `T`; both run inside the context (and the CPU budget), so no JSON is needed.
    fn run<T, E, R>(
        &mut self,
        response_key: &str,
        event: E,
        read: R,
    ) -> Result<Invocation<T>, ExecutionError>
    where
        E: for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<Value<'js>>,
        R: for<'js> FnOnce(&Ctx<'js>, &Object<'js>, bool) -> Result<T, ReadError>,
    {
        self.invoke(|ctx, invoke, _| {
            let invoke = invoke.clone().restore(ctx).map_err(|e| js_error(ctx, e))?;
            let event = event(ctx).map_err(|e| js_error(ctx, e))?;
            let out = call(ctx, invoke, event)?;
            let is_response = is_response(&out, response_key);
            read(ctx, &out, is_response).map_err(|e| read_error(ctx, e))
        })
    }

    /// One invocation of the handler through `work`, which builds the event, calls
    /// `invoke` (through [`call`]) or the handler itself, and reads the result, all inside
    /// the CPU budget.
    fn invoke<T, W>(&mut self, work: W) -> Result<Invocation<T>, ExecutionError>
    where
        W: for<'js> FnOnce(
            &Ctx<'js>,
            &rquickjs::Persistent<Function<'static>>,
            &mut Skeleton,
        ) -> Result<T, (ErrorKind, String)>,
    {
        if self.state.is_none() {
            self.rebuilds += 1;
            let st = self
                .build()
                .map_err(|e| ExecutionError::new(ErrorKind::Internal, e.to_string()))?;
            self.state = Some(st);
        }
        let Some(state) = self.state.as_mut() else {
            return Err(ExecutionError::new(
                ErrorKind::Internal,
                "engine has no runtime",
            ));
        };
        lock(&self.host.logs).take();
        *lock(&self.host.origin) = None;
        self.interrupted.store(false, Ordering::Relaxed);
        let budget = self.opts.limits.cpu_budget;
        self.invocations = self.invocations.wrapping_add(1);
        self.clock
            .start(budget, self.invocations.is_multiple_of(CPU_SAMPLE));

        state.meter.take_refused();
        let skel = &mut state.skel;
        let invoke = &state.invoke.0;
        let result = state.ctx.with(|ctx| work(&ctx, invoke, skel));
        let out_of_memory = state.meter.take_refused();

        let (cpu_time, cpu_measured) = self.clock.stop();
        let compute_utilization = utilization(cpu_time, budget);
        let logs = lock(&self.host.logs).take();
        let fail = |kind, message: String, logs| ExecutionError {
            kind,
            message,
            logs,
            compute_utilization,
        };
        match result {
            Ok(output) => Ok(Invocation {
                output,
                origin_change: lock(&self.host.origin).take(),
                logs,
                compute_utilization,
                cpu_time,
                cpu_measured,
            }),
            Err((kind, message)) => {
                let timed_out = self.interrupted.swap(false, Ordering::Relaxed);
                let kind = if out_of_memory {
                    ErrorKind::Memory
                } else if timed_out {
                    ErrorKind::Timeout
                } else {
                    kind
                };
                let message = match kind {
                    ErrorKind::Timeout => {
                        format!("the function exceeded its CPU budget of {budget:?}")
                    }
                    ErrorKind::Memory => {
                        format!(
                            "the function exceeded its memory limit of {} bytes",
                            self.opts.limits.memory_bytes
                        )
                    }
                    _ => message,
                };
                if matches!(kind, ErrorKind::Timeout | ErrorKind::Memory) {
                    // Drop the runtime now so its memory goes back before the next request.
                    self.state = None;
                }
                Err(fail(kind, message, logs))
            }
        }
    }
}

/// Map an engine error to (kind, message); exceptions are described from the context.
fn js_error(ctx: &Ctx<'_>, e: rquickjs::Error) -> (ErrorKind, String) {
    match e {
        rquickjs::Error::Allocation => (ErrorKind::Memory, "out of memory".into()),
        rquickjs::Error::Exception => {
            let msg = describe(ctx);
            // QuickJS concatenates strings as ropes, so a string grown without end reaches
            // its length limit (QuickJS's own InternalError) before it has taken the memory:
            // the same overrun.
            let too_long = msg == "InternalError: string too long";
            let kind = if msg.contains("out of memory") || too_long {
                ErrorKind::Memory
            } else {
                ErrorKind::Exception
            };
            (kind, msg)
        }
        rquickjs::Error::WouldBlock => (
            ErrorKind::Exception,
            "the handler's promise never settled".into(),
        ),
        other => (ErrorKind::Internal, other.to_string()),
    }
}

/// One call into JS: the handler's settled result, which must be an object. Errors are
/// (kind, message); timeouts are recognised by the caller.
fn call<'js>(
    ctx: &Ctx<'js>,
    invoke: Function<'js>,
    event: Value<'js>,
) -> Result<Object<'js>, (ErrorKind, String)> {
    let js_err = |e| js_error(ctx, e);
    // Called directly rather than through rquickjs's argument list, which allocated and
    // released per call about a tenth of a short handler's own cost.
    let mut arg = event.as_raw();
    // SAFETY: JS_Call takes no reference to the function or its arguments (both stay owned
    // here until the call returns); the result is a new reference, handed to the `Value`.
    let mut out = unsafe {
        let raw = qjs::JS_Call(
            ctx.as_raw().as_ptr(),
            invoke.as_raw(),
            qjs::JS_UNDEFINED,
            1,
            &mut arg,
        );
        Value::from_raw(ctx.clone(), raw)
    };
    drop(event);
    if out.is_exception() {
        return Err(js_err(rquickjs::Error::Exception));
    }
    if let Some(p) = out.as_promise() {
        out = p.finish::<Value>().map_err(js_err)?;
    }
    // Settle stray jobs (un-awaited promises) inside this invocation's budget.
    while ctx.execute_pending_job() {}
    match out.into_object() {
        Some(obj) => Ok(obj),
        None => Err((
            ErrorKind::InvalidOutput,
            "the handler must return a request or response object".into(),
        )),
    }
}

/// A result that could not be read, as (kind, message).
fn read_error(ctx: &Ctx<'_>, e: ReadError) -> (ErrorKind, String) {
    match e.message() {
        Some(m) => (ErrorKind::InvalidOutput, m),
        None => match e {
            ReadError::Js(e) => js_error(ctx, e),
            _ => (ErrorKind::Internal, "unreadable output".into()),
        },
    }
}

/// `JSON.stringify` of a hook's result, for the serde-based Lambda path.
fn stringify<'js>(ctx: &Ctx<'js>, out: &Object<'js>) -> Result<String, ReadError> {
    match ctx.json_stringify(out.clone())? {
        Some(s) => Ok(s.to_string()?),
        None => Err(ReadError::Output(
            "the handler's result cannot be serialised".into(),
        )),
    }
}

fn is_response(obj: &Object<'_>, key: &str) -> bool {
    obj.contains_key(key).unwrap_or(false)
}

fn parse_output<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, ReadError> {
    serde_json::from_str(json).map_err(|e| ReadError::Output(format!("invalid output: {e}")))
}

fn check_body(len: usize, max: usize) -> Result<(), ReadError> {
    if len > max {
        return Err(ReadError::Output(format!(
            "generated response body is {len} bytes, the limit is {max} bytes"
        )));
    }
    Ok(())
}
