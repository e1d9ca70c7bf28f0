//! Edge functions for Meridian: CloudFront Functions (`cloudfront-js-2.0`) for viewer
//! request/response, and Lambda@Edge-style `exports.handler` hooks for origin
//! request/response, on an embedded QuickJS engine.
//!
//! Flow: [`FunctionCode::compile`] once per deployment → one [`Engine`] per worker (or an
//! [`EnginePool`]) → `viewer_request` / `viewer_response` / `origin` per request. Limits
//! ([`Limits`]) follow CloudFront: 10 KB code, 2 MB memory and a 1 ms CPU budget for viewer
//! functions. [`test_function`] is the TestFunction equivalent for the CLI.

mod builtins;
mod code;
mod engine;
mod error;
pub mod event;
pub mod kvs;
pub mod lambda;
mod limits;
mod pool;
mod test_fn;

pub use builtins::OriginChange;
pub use code::FunctionCode;
pub use engine::{Engine, EngineOptions, Invocation};
pub use error::{CompileError, ErrorKind, ExecutionError};
pub use event::{Event, Outcome, Request, Response};
pub use kvs::{KeyValueStore, KvsError};
pub use lambda::{LambdaEvent, LambdaRequest, LambdaResponse, OriginOutcome};
pub use limits::{Kind, Limits};
pub use pool::{EnginePool, PooledEngine};
pub use test_fn::{test_function, TestError, TestFailure, TestOutput};
