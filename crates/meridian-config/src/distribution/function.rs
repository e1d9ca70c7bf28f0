//! `[[distribution.function]]`, `[[distribution.key_value_store]]` and a behavior's
//! `function_associations`: edge code in CloudFront's terms. The config names the code and
//! where it runs; compiling it is the edge's job (and `meridian validate`'s), so this crate
//! stays free of a JavaScript engine.

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Which runtime a function is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FunctionRuntime {
    /// CloudFront Functions, JavaScript runtime 2.0: `function handler(event)`, viewer
    /// request and viewer response.
    #[serde(rename = "cloudfront-js-2.0")]
    CloudFrontJs2,
    /// Lambda@Edge-style `exports.handler = async (event) => ...`, origin request and
    /// origin response (run on cache misses only).
    #[serde(rename = "lambda-edge")]
    LambdaEdge,
}

impl FunctionRuntime {
    /// The name the config and CloudFront give it.
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionRuntime::CloudFrontJs2 => "cloudfront-js-2.0",
            FunctionRuntime::LambdaEdge => "lambda-edge",
        }
    }
}

/// Where a function runs on a request's way through the PoP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionEvent {
    ViewerRequest,
    ViewerResponse,
    OriginRequest,
    OriginResponse,
}

impl FunctionEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionEvent::ViewerRequest => "viewer-request",
            FunctionEvent::ViewerResponse => "viewer-response",
            FunctionEvent::OriginRequest => "origin-request",
            FunctionEvent::OriginResponse => "origin-response",
        }
    }

    /// The runtime that can run at this event (CloudFront Functions run at the viewer
    /// events, Lambda@Edge at the origin events here).
    pub fn runtime(self) -> FunctionRuntime {
        match self {
            FunctionEvent::ViewerRequest | FunctionEvent::ViewerResponse => {
                FunctionRuntime::CloudFrontJs2
            }
            FunctionEvent::OriginRequest | FunctionEvent::OriginResponse => {
                FunctionRuntime::LambdaEdge
            }
        }
    }
}

/// A function's code: a file, or text written in the config itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FunctionSource {
    File(PathBuf),
    /// `source = '''...'''`: `config` is the config's name and `line` the config line the
    /// text's first line is on, so an error in the code points into the config.
    Inline {
        text: String,
        config: String,
        line: usize,
    },
}

impl FunctionSource {
    /// The code, the name to report errors against, and the line of that file the code
    /// starts on (1 for a file of its own).
    pub fn load(&self) -> std::io::Result<(String, String, usize)> {
        match self {
            FunctionSource::File(p) => {
                Ok((std::fs::read_to_string(p)?, p.display().to_string(), 1))
            }
            FunctionSource::Inline { text, config, line } => {
                Ok((text.clone(), config.clone(), *line))
            }
        }
    }
}

/// The file, or `inline in <config>:<line>`: how tools name where the code is.
impl std::fmt::Display for FunctionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FunctionSource::File(p) => write!(f, "{}", p.display()),
            FunctionSource::Inline { config, line, .. } => write!(f, "inline in {config}:{line}"),
        }
    }
}

/// `[[distribution.function]]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeFunction {
    pub name: String,
    pub runtime: FunctionRuntime,
    pub source: FunctionSource,
    /// The key value store the function reads through `cf.kvs()`.
    pub key_value_store: Option<String>,
    /// CPU time one invocation may use (CloudFront's budget is about 1 ms for viewer
    /// functions; origin hooks get 5 s).
    pub cpu_budget: Option<Duration>,
}

/// `[[distribution.key_value_store]]`: data every PoP holds, loaded from a file in
/// CloudFront's import format (`{"data":[{"key":..,"value":..}]}`), changed at run time
/// with `meridian kvs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValueStoreConfig {
    pub name: String,
    pub file: Option<PathBuf>,
}

/// One entry of a behavior's `function_associations`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionAssociation {
    pub event_type: FunctionEvent,
    pub function: String,
}

pub(super) fn read_function(
    t: &Table,
    d: &mut Diagnostics,
    name: String,
    stores: &[KeyValueStoreConfig],
) -> Option<EdgeFunction> {
    let runtime = match t.choice(d, "runtime", &["cloudfront-js-2.0", "lambda-edge"]) {
        Some("lambda-edge") => FunctionRuntime::LambdaEdge,
        Some(_) => FunctionRuntime::CloudFrontJs2,
        None if t.has("runtime") => return None,
        None => FunctionRuntime::CloudFrontJs2,
    };
    let file = t.str(d, "code");
    let inline = t.str(d, "source").zip(t.get("source"));
    let source = match (file, inline) {
        (Some(_), Some((_, f))) => {
            d.error(
                f.span,
                &f.key,
                format!(
                    "`{}` has both `code` (a file) and `source` (inline code)",
                    t.path
                ),
                "keep one of them",
            );
            return None;
        }
        (Some(p), None) if p.is_empty() => {
            let f = t.get("code")?;
            d.error(
                f.span,
                &f.key,
                "the file name is empty",
                "name the function's .js file",
            );
            return None;
        }
        (Some(p), None) => FunctionSource::File(PathBuf::from(p)),
        (None, Some((text, f))) => {
            // A multi-line string starts on the line after its opening quotes.
            let start = f.span.start.min(d.src.len());
            let mut line = d.src[..start].matches('\n').count() + 1;
            if d.src[start..].starts_with("'''") || d.src[start..].starts_with("\"\"\"") {
                line += 1;
            }
            FunctionSource::Inline {
                text,
                config: d.file.to_owned(),
                line,
            }
        }
        (None, None) => {
            t.missing(
                d,
                "code",
                "add code = \"functions/name.js\" (or inline source = '''...''')",
            );
            return None;
        }
    };
    let key_value_store = t.str(d, "key_value_store");
    if let (Some(store), Some(f)) = (&key_value_store, t.get("key_value_store")) {
        if !stores.iter().any(|s| &s.name == store) {
            d.error(
                f.span,
                &f.key,
                format!("there is no key value store named `{store}`"),
                format!("define it with [[distribution.key_value_store]] and name = \"{store}\""),
            );
        }
    }
    let cpu_budget = t.duration(d, "cpu_budget");
    if let (Some(b), Some(f)) = (cpu_budget, t.get("cpu_budget")) {
        if b.is_zero() || b > Duration::from_secs(30) {
            d.error(
                f.span,
                &f.key,
                format!("a CPU budget of {b:?} is not one an edge can give"),
                "use a budget from \"1ms\" (CloudFront Functions) to \"30s\" (Lambda@Edge's most)",
            );
        }
    }
    t.finish(d);
    Some(EdgeFunction {
        name,
        runtime,
        source,
        key_value_store,
        cpu_budget,
    })
}

pub(super) fn read_key_value_store(
    t: &Table,
    d: &mut Diagnostics,
    name: String,
) -> Option<KeyValueStoreConfig> {
    let file = t.str(d, "file").map(PathBuf::from);
    t.finish(d);
    Some(KeyValueStoreConfig { name, file })
}

/// A behavior's `function_associations`: at most one function per event type, each
/// defined and written for that event's runtime.
pub(super) fn read_associations(
    s: &Table,
    d: &mut Diagnostics,
    functions: &[EdgeFunction],
) -> Vec<FunctionAssociation> {
    let mut out: Vec<FunctionAssociation> = Vec::new();
    for a in s.tables(d, "function_associations") {
        let event = a.choice(
            d,
            "event_type",
            &[
                "viewer-request",
                "viewer-response",
                "origin-request",
                "origin-response",
            ],
        );
        if event.is_none() && !a.has("event_type") {
            a.missing(d, "event_type", "add event_type = \"viewer-request\"");
        }
        let function = a.req_str(
            d,
            "function",
            "add function = \"<name of a [[distribution.function]]>\"",
        );
        a.finish(d);
        let (Some(event), Some(function)) = (event, function) else {
            continue;
        };
        let event_type = match event {
            "viewer-request" => FunctionEvent::ViewerRequest,
            "viewer-response" => FunctionEvent::ViewerResponse,
            "origin-request" => FunctionEvent::OriginRequest,
            _ => FunctionEvent::OriginResponse,
        };
        let Some(f) = a.get("function") else { continue };
        match functions.iter().find(|x| x.name == function) {
            None => {
                let mut known: Vec<&str> = functions.iter().map(|x| x.name.as_str()).collect();
                known.sort();
                d.error(
                    f.span,
                    &f.key,
                    format!("there is no function named `{function}`"),
                    if known.is_empty() {
                        format!(
                            "define one with [[distribution.function]] and name = \"{function}\""
                        )
                    } else {
                        format!("use one of: {}", known.join(", "))
                    },
                );
                continue;
            }
            Some(x) if x.runtime != event_type.runtime() => {
                d.error(
                    f.span,
                    &f.key,
                    format!(
                        "`{function}` is a {} function and cannot run at {}",
                        x.runtime.as_str(),
                        event_type.as_str()
                    ),
                    match event_type.runtime() {
                        FunctionRuntime::CloudFrontJs2 => {
                            "viewer events run runtime = \"cloudfront-js-2.0\" functions"
                        }
                        FunctionRuntime::LambdaEdge => {
                            "origin events run runtime = \"lambda-edge\" functions"
                        }
                    },
                );
                continue;
            }
            Some(_) => {}
        }
        if out.iter().any(|o| o.event_type == event_type) {
            d.error(
                f.span,
                &f.key,
                format!(
                    "this behavior already has a {} function",
                    event_type.as_str()
                ),
                "associate one function per event type (CloudFront's rule)",
            );
            continue;
        }
        out.push(FunctionAssociation {
            event_type,
            function,
        });
    }
    out
}
