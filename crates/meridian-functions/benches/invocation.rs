//! What one invocation of a trivial viewer-request function costs on a reused engine, and
//! what building an engine costs: a measurement, so a benchmark rather than a test.
//! Run: `cargo bench -p meridian-functions --bench invocation`

#[path = "../tests/common/mod.rs"]
mod common;

use meridian_functions::*;
use std::time::Instant;

fn main() {
    let code = FunctionCode::compile(
        "perf",
        "function handler(event) {\n  var r = event.request;\n  r.headers['x-edge'] = {value: 'meridian'};\n  if (r.uri.endsWith('/')) r.uri += 'index.html';\n  return r;\n}",
        Kind::ViewerRequest,
    )
    .expect("compile");
    let t = Instant::now();
    for _ in 0..20 {
        Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest)).expect("engine");
    }
    println!(
        "engine build (runtime + built-ins + function): {:?}",
        t.elapsed() / 20
    );
    let mut engine =
        Engine::new(&code, EngineOptions::for_kind(Kind::ViewerRequest)).expect("engine");
    let event = common::request_event("/docs/");
    for _ in 0..1000 {
        engine.viewer_request(&event).expect("warm-up");
    }
    let mut samples = Vec::with_capacity(20_000);
    let mut util = 0u64;
    for _ in 0..20_000 {
        let t = Instant::now();
        let inv = engine.viewer_request(&event).expect("run");
        samples.push(t.elapsed());
        util += u64::from(inv.compute_utilization);
    }
    samples.sort();
    let pct = |p: usize| samples[samples.len() * p / 100];
    println!(
        "viewer-request trivial: p50 {:?} p90 {:?} p99 {:?}, mean compute utilization {}%, heap {} bytes",
        pct(50),
        pct(90),
        pct(99),
        util / samples.len() as u64,
        engine.memory_used()
    );
}
