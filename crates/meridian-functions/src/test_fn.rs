//! The TestFunction equivalent: run code once against an event given as JSON and report
//! what CloudFront's console shows: the output object, compute utilization, logs, error.

use crate::builtins::OriginChange;
use crate::code::FunctionCode;
use crate::engine::{Engine, EngineOptions, Invocation};
use crate::error::{CompileError, ErrorKind, ExecutionError};
use crate::event::{Event, Outcome};
use crate::lambda::{LambdaEvent, OriginOutcome};
use crate::limits::Kind;
use serde::Serialize;
use thiserror::Error;

/// Why a test could not run at all (as opposed to the function failing, which is reported
/// inside [`TestOutput`]).
#[derive(Debug, Error)]
pub enum TestError {
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("invalid test event for a {kind} function: {message}")]
    Event { kind: Kind, message: String },
}

/// The function's failure as shown in the test result.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TestFailure {
    pub kind: ErrorKind,
    pub message: String,
}

/// Result of a test run; serialises to JSON for the CLI.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TestOutput {
    /// Viewer functions: `{"request": ...}` or `{"response": ...}`; origin hooks: the
    /// returned request or response object. `None` when the function failed.
    pub function_output: Option<serde_json::Value>,
    pub compute_utilization: u8,
    pub logs: Vec<String>,
    pub error: Option<TestFailure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_change: Option<OriginChange>,
}

fn bad_event(kind: Kind) -> impl Fn(serde_json::Error) -> TestError {
    move |e| TestError::Event {
        kind,
        message: e.to_string(),
    }
}

/// Run `code` once on `event_json` with `opts` (limits, key value store).
pub fn test_function(
    code: &FunctionCode,
    opts: EngineOptions,
    event_json: &str,
) -> Result<TestOutput, TestError> {
    let kind = code.kind();
    let mut engine = Engine::new(code, opts)?;
    let to_json =
        |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or(serde_json::Value::Null);
    let result: Result<Invocation<serde_json::Value>, ExecutionError> = if kind.is_viewer() {
        let mut event: Event = serde_json::from_str(event_json).map_err(bad_event(kind))?;
        if event.context.event_type.is_empty() {
            event.context.event_type = kind.event_type().to_string();
        }
        if event.version.is_empty() {
            event.version = "1.0".into();
        }
        if kind == Kind::ViewerRequest {
            engine.viewer_request(&event).map(|i| {
                map(i, |o| match o {
                    Outcome::Request(r) => to_json(serde_json::to_value(r))
                        .pipe(|v| serde_json::json!({ "request": v })),
                    Outcome::Response(r) => to_json(serde_json::to_value(r))
                        .pipe(|v| serde_json::json!({ "response": v })),
                })
            })
        } else {
            if event.response.is_none() {
                return Err(TestError::Event {
                    kind,
                    message: "a viewer-response event needs a response".into(),
                });
            }
            engine.viewer_response(&event).map(|i| {
                map(
                    i,
                    |r| serde_json::json!({ "response": to_json(serde_json::to_value(r)) }),
                )
            })
        }
    } else {
        let event: LambdaEvent = serde_json::from_str(event_json).map_err(bad_event(kind))?;
        if event.records.is_empty() {
            return Err(TestError::Event {
                kind,
                message: "Records is empty".into(),
            });
        }
        engine.origin(&event).map(|i| {
            map(i, |o| match o {
                OriginOutcome::Request(r) => to_json(serde_json::to_value(r)),
                OriginOutcome::Response(r) => to_json(serde_json::to_value(r)),
            })
        })
    };
    Ok(match result {
        Ok(inv) => TestOutput {
            function_output: Some(inv.output),
            compute_utilization: inv.compute_utilization,
            logs: inv.logs,
            error: None,
            origin_change: inv.origin_change,
        },
        Err(e) => TestOutput {
            function_output: None,
            compute_utilization: e.compute_utilization,
            logs: e.logs,
            error: Some(TestFailure {
                kind: e.kind,
                message: e.message,
            }),
            origin_change: None,
        },
    })
}

fn map<T, U>(i: Invocation<T>, f: impl FnOnce(T) -> U) -> Invocation<U> {
    Invocation {
        output: f(i.output),
        origin_change: i.origin_change,
        logs: i.logs,
        compute_utilization: i.compute_utilization,
        cpu_time: i.cpu_time,
        cpu_measured: i.cpu_measured,
    }
}

trait Pipe: Sized {
    fn pipe<U>(self, f: impl FnOnce(Self) -> U) -> U {
        f(self)
    }
}
impl<T> Pipe for T {}
