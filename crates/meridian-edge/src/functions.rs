//! The PoP's edge functions: each associated function compiled once at start, a pool of
//! engines per (function, event) shared by every connection, the key value stores the
//! functions read, and their metrics. The phases call in through `phases/functions.rs`.

use meridian_config::{Distribution, EdgeFunction, FunctionEvent};
use meridian_functions::{
    CompileError, EngineOptions, EnginePool, ErrorKind, FunctionCode, KeyValueStore, Kind, Limits,
};
use meridian_telemetry::prometheus_client::metrics::{
    counter::Counter, family::Family, histogram::Histogram,
};
use meridian_telemetry::{Labels, Metrics};
use std::collections::HashMap;
use std::sync::Arc;

/// Why a PoP cannot run its functions: it refuses to start rather than serve without them.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("function `{function}`: cannot read {file}: {source}")]
    Read {
        function: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: function `{function}`: {message}")]
    Compile {
        function: String,
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("key value store `{store}`: {message}")]
    Store { store: String, message: String },
}

/// Compiles `f` for `event` the way the edge runs it. Errors name the file (or the config
/// for inline code) with the line and column of the fault.
pub fn compile(f: &EdgeFunction, event: FunctionEvent) -> Result<FunctionCode, FunctionError> {
    let (text, file, first_line) = f.source.load().map_err(|source| FunctionError::Read {
        function: f.name.clone(),
        file: match &f.source {
            meridian_config::FunctionSource::File(p) => p.display().to_string(),
            meridian_config::FunctionSource::Inline { config, .. } => config.clone(),
        },
        source,
    })?;
    FunctionCode::compile(&f.name, &text, kind_of(event)).map_err(|e| {
        let (line, column, message) = match &e {
            CompileError::Syntax {
                message,
                line,
                column,
                ..
            } => (
                *line as usize,
                *column as usize,
                format!("SyntaxError: {message}"),
            ),
            other => {
                // Our error names the function already.
                let text = other.to_string();
                let prefix = format!("function {}: ", f.name);
                (1, 1, text.strip_prefix(&prefix).unwrap_or(&text).to_owned())
            }
        };
        FunctionError::Compile {
            function: f.name.clone(),
            file: file.clone(),
            line: first_line + line.saturating_sub(1),
            column,
            message,
        }
    })
}

pub fn kind_of(event: FunctionEvent) -> Kind {
    match event {
        FunctionEvent::ViewerRequest => Kind::ViewerRequest,
        FunctionEvent::ViewerResponse => Kind::ViewerResponse,
        FunctionEvent::OriginRequest => Kind::OriginRequest,
        FunctionEvent::OriginResponse => Kind::OriginResponse,
    }
}

/// Loads a store from its import file (empty without one).
pub fn load_store(
    name: &str,
    file: Option<&std::path::Path>,
) -> Result<KeyValueStore, FunctionError> {
    let err = |message: String| FunctionError::Store {
        store: name.to_owned(),
        message,
    };
    match file {
        None => Ok(KeyValueStore::new(name)),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
            KeyValueStore::from_import_json(name, &text)
                .map_err(|e| err(format!("{}: {e}", p.display())))
        }
    }
}

/// One function compiled for one event type: its engines and its own series, looked up
/// once at start so an invocation does not hash labels.
pub(crate) struct Function {
    pub pool: EnginePool,
    pub name: String,
    invocations: Counter,
    utilization: Histogram,
    duration: Histogram,
    errors: Family<Labels, Counter>,
}

impl Function {
    /// Counts one invocation: its CPU time, its compute utilization and, when it failed,
    /// its error.
    pub fn record(
        &self,
        utilization: u8,
        cpu_time: Option<std::time::Duration>,
        error: Option<ErrorKind>,
    ) {
        self.invocations.inc();
        self.utilization.observe(f64::from(utilization));
        if let Some(t) = cpu_time {
            self.duration.observe(t.as_secs_f64());
        }
        if let Some(kind) = error {
            self.errors
                .get_or_create(&vec![
                    ("function", self.name.clone()),
                    ("kind", kind.as_str().to_owned()),
                ])
                .inc();
        }
    }
}

/// The functions one PoP runs: by name, one slot per event type.
pub(crate) struct EdgeFunctions {
    by_name: HashMap<String, [Option<Arc<Function>>; 4]>,
    stores: HashMap<String, KeyValueStore>,
}

fn slot(event: FunctionEvent) -> usize {
    match event {
        FunctionEvent::ViewerRequest => 0,
        FunctionEvent::ViewerResponse => 1,
        FunctionEvent::OriginRequest => 2,
        FunctionEvent::OriginResponse => 3,
    }
}

/// Engines kept per pool: about one per worker thread, so a burst never builds many.
const MAX_IDLE_ENGINES: usize = 8;

impl EdgeFunctions {
    /// Compiles every function a behavior associates, for the events it is associated with.
    pub fn from_config(dist: &Distribution, metrics: &Metrics) -> Result<Self, FunctionError> {
        let mut stores = HashMap::new();
        for s in &dist.key_value_stores {
            stores.insert(s.name.clone(), load_store(&s.name, s.file.as_deref())?);
        }
        let invocations: Family<Labels, Counter> = metrics.register(
            "edge_function_invocations",
            "Edge function invocations, by function and event type",
            Family::default(),
        );
        let errors: Family<Labels, Counter> = metrics.register(
            "edge_function_errors",
            "Edge function invocations that failed (503 to the viewer), by function and kind",
            Family::default(),
        );
        let utilization: Family<Labels, Histogram> = metrics.register(
            "edge_function_compute_utilization",
            "CPU time of an invocation as a percentage of its budget (CloudFront's compute utilization)",
            Family::new_with_constructor(|| {
                Histogram::new([5.0, 10.0, 20.0, 30.0, 50.0, 70.0, 90.0, 100.0])
            }),
        );
        let duration: Family<Labels, Histogram> = metrics.register(
            "edge_function_duration_seconds",
            "CPU time of an invocation",
            Family::new_with_constructor(|| {
                Histogram::new([
                    0.000005, 0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.005,
                    0.05, 1.0,
                ])
            }),
        );
        let mut by_name: HashMap<String, [Option<Arc<Function>>; 4]> = HashMap::new();
        let associations = dist
            .behaviors
            .iter()
            .chain(std::iter::once(&dist.default_behavior))
            .flat_map(|b| &b.function_associations);
        for a in associations {
            let slots = by_name.entry(a.function.clone()).or_default();
            if slots[slot(a.event_type)].is_some() {
                continue;
            }
            let Some(f) = dist.functions.iter().find(|f| f.name == a.function) else {
                continue;
            };
            let code = compile(f, a.event_type)?;
            let mut limits = Limits::for_kind(kind_of(a.event_type));
            if let Some(b) = f.cpu_budget {
                limits = limits.with_cpu_budget(b);
            }
            let mut opts = EngineOptions::for_kind(kind_of(a.event_type)).with_limits(limits);
            if let Some(s) = f.key_value_store.as_ref().and_then(|s| stores.get(s)) {
                opts = opts.with_kvs(s.clone());
            }
            let pool = EnginePool::new(code, opts, MAX_IDLE_ENGINES).map_err(|e| {
                FunctionError::Compile {
                    function: f.name.clone(),
                    file: "-".into(),
                    line: 1,
                    column: 1,
                    message: e.to_string(),
                }
            })?;
            let labels = vec![
                ("function", f.name.clone()),
                ("event_type", a.event_type.as_str().to_owned()),
            ];
            let by_function = vec![("function", f.name.clone())];
            slots[slot(a.event_type)] = Some(Arc::new(Function {
                pool,
                name: f.name.clone(),
                invocations: invocations.get_or_create(&labels).clone(),
                utilization: utilization.get_or_create(&by_function).clone(),
                duration: duration.get_or_create(&by_function).clone(),
                errors: errors.clone(),
            }));
        }
        Ok(EdgeFunctions { by_name, stores })
    }

    /// The function `behavior` runs at `event`, when it has one.
    pub fn for_behavior(
        &self,
        behavior: &meridian_config::Behavior,
        event: FunctionEvent,
    ) -> Option<&Arc<Function>> {
        let a = behavior
            .function_associations
            .iter()
            .find(|a| a.event_type == event)?;
        self.by_name.get(a.function.as_str())?[slot(event)].as_ref()
    }

    /// A key value store by name (changed at run time through the admin API).
    pub fn store(&self, name: &str) -> Option<&KeyValueStore> {
        self.stores.get(name)
    }

    pub fn store_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.stores.keys().cloned().collect();
        v.sort();
        v
    }
}
