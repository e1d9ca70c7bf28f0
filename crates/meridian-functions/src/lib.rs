//! Edge functions for Meridian: CloudFront Functions (`cloudfront-js-2.0`) for viewer
//! request/response, and Lambda@Edge-style `exports.handler` hooks for origin
//! request/response, on an embedded QuickJS engine.
//!
//! Flow: [`FunctionCode::compile`] once per deployment → one [`Engine`] per worker (or an
//! [`EnginePool`]) → `viewer_request` / `viewer_response` / `origin` per request. Limits
//! ([`Limits`]) follow CloudFront: 10 KB code, 2 MB memory and a 1 ms CPU budget for viewer
//! functions. [`test_function`] is the TestFunction equivalent for the CLI.
//!
//! ```
//! use meridian_functions::{Engine, EngineOptions, Event, FunctionCode, Kind, Outcome};
//! use meridian_functions::event::{Context, Request};
//!
//! let src = "function handler(event) { event.request.uri += 'index.html'; return event.request; }";
//! let code = FunctionCode::compile("index", src, Kind::ViewerRequest).unwrap();
//! // One engine per worker (or an EnginePool); never one per request.
//! let mut engine = Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest)).unwrap();
//! let request = Request { method: "GET".into(), uri: "/docs/".into(), ..Request::default() };
//! let event = Event::viewer_request(Context::default(), "192.0.2.1", request);
//! # // Doc tests run unoptimised QuickJS; a 1 ms budget is for release builds.
//! # let mut engine = Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest).with_limits(
//! #     meridian_functions::Limits::for_kind(Kind::ViewerRequest).with_cpu_budget(std::time::Duration::from_millis(100)))).unwrap();
//! match engine.viewer_request(&event) {
//!     Ok(inv) => match inv.output {
//!         Outcome::Request(r) => assert_eq!(r.uri, "/docs/index.html"),
//!         Outcome::Response(_) => unreachable!("answered at the edge"),
//!     },
//!     Err(e) => panic!("function error (CloudFront answers 503): {e}"),
//! }
//! ```
//!
//! Module syntax: `import x from 'cloudfront'|'crypto'|'querystring'|'buffer'` and
//! `export const handler` are lowered line-for-line to `require`/`exports` at compile time,
//! so functions stay plain scripts and `handler` stays a global the engine can call.

mod builtins;
mod code;
mod compile;
mod convert;
mod diff;
mod engine;
mod error;
pub mod event;
pub mod kvs;
pub mod lambda;
mod limits;
mod pool;
mod raw;
mod skeleton;
mod test_fn;

pub use builtins::OriginChange;
pub use code::FunctionCode;
pub use diff::{Changes, RequestChanges};
pub use engine::{Engine, EngineOptions, Invocation};
pub use error::{CompileError, ErrorKind, ExecutionError};
pub use event::{Event, Outcome, Request, Response};
pub use kvs::{KeyValueStore, KvsError};
pub use lambda::{LambdaEvent, LambdaRequest, LambdaResponse, OriginOutcome};
pub use limits::{Kind, Limits};
pub use pool::{EnginePool, PooledEngine};
pub use test_fn::{test_function, TestError, TestFailure, TestOutput};
