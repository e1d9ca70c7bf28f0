//! `meridian functions`: CloudFront's TestFunction for a local file, and the functions a
//! config defines with where each runs.

use super::deployment::load_config;
use super::flags::duration_flag;
use anyhow::Result;
use meridian_config::{Config, EdgeFunction, FunctionEvent, FunctionSource};
use meridian_edge::functions::{compile, kind_of, load_store, FunctionError};
use meridian_functions::{test_function, EngineOptions, KeyValueStore, Limits, TestError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum FunctionsCmd {
    /// Run a function once on a test event, as CloudFront's TestFunction: the returned
    /// object, compute utilization, logs and error.
    ///
    /// Exits 0 when the function ran, 1 when it failed while running (an exception, the
    /// CPU budget, memory, an invalid return value), and 2 when it does not compile or the
    /// event cannot be read.
    Test(TestArgs),
    /// Every [[distribution.function]] of a config: runtime, code, key value store, and the
    /// behaviors that run it at which event types.
    List {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// The function's .js file.
    file: PathBuf,
    /// The test event: CloudFront Functions' event (viewer stages) or Lambda@Edge's
    /// `{"Records": [...]}` (origin stages), as JSON.
    #[arg(long)]
    event: PathBuf,
    /// Where the function runs; decides the event shape, the runtime and the limits.
    #[arg(long, value_enum, default_value = "viewer-request")]
    stage: Stage,
    /// A key value store for `cf.kvs()`, in CloudFront's import format
    /// (`{"data":[{"key":..,"value":..}]}`); an empty store when omitted.
    #[arg(long)]
    kvs: Option<PathBuf>,
    /// CPU time the invocation may use (CloudFront's: 1ms for viewer stages, 5s for
    /// origin stages).
    #[arg(long)]
    cpu_budget: Option<String>,
    /// One JSON object on stdout, for scripts.
    #[arg(long)]
    json: bool,
}

/// The four event types, spelled as CloudFront spells them.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Stage {
    ViewerRequest,
    ViewerResponse,
    OriginRequest,
    OriginResponse,
}

impl Stage {
    fn event(self) -> FunctionEvent {
        match self {
            Stage::ViewerRequest => FunctionEvent::ViewerRequest,
            Stage::ViewerResponse => FunctionEvent::ViewerResponse,
            Stage::OriginRequest => FunctionEvent::OriginRequest,
            Stage::OriginResponse => FunctionEvent::OriginResponse,
        }
    }
}

pub fn run(cmd: FunctionsCmd) -> Result<ExitCode> {
    match cmd {
        FunctionsCmd::Test(args) => Ok(test(args)),
        FunctionsCmd::List { config } => list(config.as_deref()),
    }
}

/// Prints a one-line error and gives the "could not run the test" status.
fn usage_error(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn test(args: TestArgs) -> ExitCode {
    let event = args.stage.event();
    let kind = kind_of(event);
    let mut limits = Limits::for_kind(kind);
    if let Some(b) = &args.cpu_budget {
        match duration_flag("cpu-budget", b) {
            Ok(d) if !d.is_zero() => limits = limits.with_cpu_budget(d),
            Ok(_) => return usage_error("--cpu-budget: a budget of 0 runs nothing".into()),
            Err(msg) => return usage_error(msg),
        }
    }
    // Inputs first, so a typo in a path is reported before any compiling.
    let event_json = match read_event(&args.event) {
        Ok(t) => t,
        Err(msg) => return usage_error(msg),
    };
    let store = match &args.kvs {
        // The store is always bound so a function calling `cf.kvs()` runs without one.
        None => KeyValueStore::new("test"),
        Some(p) => match load_store("test", Some(p)) {
            Ok(s) => s,
            Err(e) => return usage_error(format!("--kvs: {e}")),
        },
    };
    let name = args
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "function".into());
    // The same compile the PoP does, so errors point at the same file:line:col.
    let f = EdgeFunction {
        name,
        runtime: event.runtime(),
        source: FunctionSource::File(args.file.clone()),
        key_value_store: None,
        cpu_budget: None,
    };
    let code = match compile(&f, event) {
        Ok(c) => c,
        Err(e) => return compile_failed(&e, args.json),
    };
    let opts = EngineOptions::for_kind(kind)
        .with_limits(limits)
        .with_kvs(store);
    let out = match test_function(&code, opts, &event_json) {
        Ok(o) => o,
        Err(TestError::Event { message, .. }) => {
            return usage_error(format!(
                "event file {}: not a {event} event: {message}",
                args.event.display(),
                event = event.as_str()
            ))
        }
        Err(TestError::Compile(e)) => {
            return usage_error(format!("{}: {e}", args.file.display()));
        }
    };
    let failed = out.error.is_some();
    if args.json {
        let mut v = serde_json::to_value(&out).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("file".into(), args.file.display().to_string().into());
            o.insert("stage".into(), event.as_str().into());
        }
        println!("{v:#}");
    } else {
        println!("function: {} ({})", args.file.display(), event.as_str());
        match &out.function_output {
            Some(o) => println!("output:\n{o:#}"),
            None => println!("output: none"),
        }
        if let Some(c) = &out.origin_change {
            println!(
                "origin change:\n{:#}",
                serde_json::to_value(c).unwrap_or_default()
            );
        }
        println!("compute utilization: {}%", out.compute_utilization);
        if out.logs.is_empty() {
            println!("logs: none");
        } else {
            println!("logs:");
            for l in &out.logs {
                println!("  {l}");
            }
        }
        if let Some(e) = &out.error {
            println!("error: {}: {}", e.kind.as_str(), e.message);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The event file as text, after checking it is JSON so the message can name the file and
/// the position of the fault.
fn read_event(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read event file {}: {e}", path.display()))?;
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| format!("event file {} is not valid JSON: {e}", path.display()))?;
    Ok(text)
}

/// Reports code that does not compile (or cannot be read) and gives status 2.
fn compile_failed(e: &FunctionError, json: bool) -> ExitCode {
    if json {
        let v = match e {
            FunctionError::Compile {
                file,
                line,
                column,
                message,
                ..
            } => serde_json::json!({ "compileError": {
                "file": file, "line": line, "column": column, "message": message } }),
            other => serde_json::json!({ "compileError": { "message": other.to_string() } }),
        };
        println!("{v:#}");
    } else {
        eprintln!("{e}");
    }
    ExitCode::from(2)
}

fn list(config: Option<&Path>) -> Result<ExitCode> {
    let cfg = match load_config(config) {
        Ok((c, _)) => c,
        Err(code) => return Ok(code),
    };
    print!("{}", describe_functions(&cfg));
    Ok(ExitCode::SUCCESS)
}

/// The functions and stores of a config as text, one block per function.
fn describe_functions(cfg: &Config) -> String {
    use std::fmt::Write;
    let dist = &cfg.distribution;
    let mut out = String::new();
    if dist.functions.is_empty() {
        let _ = writeln!(out, "no [[distribution.function]] in {}", cfg.origin);
    }
    for f in &dist.functions {
        let runtime = f.runtime.as_str();
        let code = &f.source;
        let _ = writeln!(out, "{}", f.name);
        let _ = writeln!(out, "  runtime:         {runtime}");
        let _ = writeln!(out, "  code:            {code}");
        let _ = writeln!(
            out,
            "  key value store: {}",
            f.key_value_store.as_deref().unwrap_or("none")
        );
        if let Some(b) = f.cpu_budget {
            let _ = writeln!(out, "  cpu budget:      {b:?}");
        }
        let uses: Vec<String> = dist
            .behaviors
            .iter()
            .chain(std::iter::once(&dist.default_behavior))
            .flat_map(|b| {
                b.function_associations
                    .iter()
                    .filter(|a| a.function == f.name)
                    .map(move |a| format!("{} at {}", b.path_pattern, a.event_type.as_str()))
            })
            .collect();
        if uses.is_empty() {
            let _ = writeln!(out, "  associated:      nowhere (no behavior runs it)");
        } else {
            let _ = writeln!(out, "  associated:      {}", uses.join(", "));
        }
    }
    for s in &dist.key_value_stores {
        let file = s
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "empty at start".into());
        let _ = writeln!(out, "key value store {}: {file}", s.name);
    }
    out
}
