//! Edge functions from two PoPs' metric text: rates and p99 are added up over the PoPs.

use super::*;

const CONFIG: &str = r#"
[deployment]
name = "f"
zone = "f.example"

[network]
subnet = "127.87.0.0/16"

[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a"]

[[edge]]
name = "paris"
location = { lat = 48.9, lon = 2.4 }

[[edge]]
name = "tokyo"
location = { lat = 35.7, lon = 139.7 }

[[distribution.function]]
name = "pretty"
source = "function handler(event) { return event.request; }"

[[distribution.function]]
name = "gen"
runtime = "lambda-edge"
source = "exports.handler = async (event) => event.Records[0].cf.request;"

[[distribution.function]]
name = "idle"
source = "function handler(event) { return event.request; }"

[[distribution.behavior]]
path_pattern = "/gen/*"
origin_group = "default"
function_associations = [{ event_type = "origin-request", function = "gen" }]

[[distribution.behavior]]
path_pattern = "/idle/*"
origin_group = "default"
function_associations = [{ event_type = "viewer-request", function = "idle" }]

[distribution.default_behavior]
origin_group = "default"
function_associations = [
  { event_type = "viewer-response", function = "pretty" },
  { event_type = "viewer-request", function = "pretty" },
]
"#;

const BOUNDS: [&str; 9] = ["5", "10", "20", "30", "50", "70", "90", "100", "+Inf"];

/// What one PoP counted between the two scrapes.
struct Counts<'a> {
    invocations: &'a [(&'a str, &'a str, u64)],
    errors: &'a [(&'a str, &'a str, u64)],
    /// Cumulative bucket counts, in `BOUNDS` order.
    utilization: &'a [(&'a str, [u64; 9])],
}

/// A PoP's metric text: every counter at `base` plus what `c` counted, so that the
/// console must take deltas, not totals.
fn text(pop: &str, base: u64, c: &Counts, scale: u64) -> String {
    let mut t = format!(
        "meridian_edge_requests_total{{pop=\"{pop}\",cache_status=\"function_generated\",status_class=\"2xx\"}} {base}\n"
    );
    for (f, e, n) in c.invocations {
        t += &format!(
            "meridian_edge_function_invocations_total{{function=\"{f}\",event_type=\"{e}\"}} {}\n",
            base + n * scale
        );
    }
    for (f, k, n) in c.errors {
        t += &format!(
            "meridian_edge_function_errors_total{{function=\"{f}\",kind=\"{k}\"}} {}\n",
            base + n * scale
        );
    }
    for (f, buckets) in c.utilization {
        for (le, n) in BOUNDS.iter().zip(buckets) {
            t += &format!(
                "meridian_edge_function_compute_utilization_bucket{{function=\"{f}\",le=\"{le}\"}} {}\n",
                base + n * scale
            );
        }
        t += &format!(
            "meridian_edge_function_compute_utilization_count{{function=\"{f}\"}} {}\n",
            base + buckets[8] * scale
        );
    }
    t
}

const PARIS: Counts = Counts {
    invocations: &[
        ("pretty", "viewer-request", 60),
        ("pretty", "viewer-response", 40),
    ],
    errors: &[("pretty", "exception", 10), ("pretty", "timeout", 4)],
    utilization: &[("pretty", [50, 80, 95, 99, 100, 100, 100, 100, 100])],
};

const TOKYO: Counts = Counts {
    invocations: &[
        ("pretty", "viewer-request", 100),
        ("gen", "origin-request", 20),
        // A function the console's config does not have (the PoP's config is older).
        ("legacy", "viewer-request", 2),
    ],
    errors: &[("pretty", "exception", 6), ("gen", "invalid-output", 1)],
    utilization: &[
        ("pretty", [60, 90, 98, 98, 98, 100, 100, 100, 100]),
        ("gen", [0, 0, 0, 0, 0, 0, 20, 20, 20]),
    ],
};

fn tick(state: &mut State, at: f64, scale: u64) {
    let scrapes = state
        .targets()
        .iter()
        .map(|t| match t.name.as_str() {
            "edge-paris" => Ok(text("paris", 1000, &PARIS, scale)),
            "edge-tokyo" => Ok(text("tokyo", 7, &TOKYO, scale)),
            _ => Err("not running".to_owned()),
        })
        .collect();
    state.tick(at, scrapes);
}

fn function<'a>(o: &'a Overview, name: &str) -> &'a FunctionView {
    o.functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is listed: {:?}", o.functions))
}

#[test]
fn per_function_rates_error_kinds_and_p99_over_every_pop() {
    let config = Config::parse(CONFIG, "f.toml").expect("valid test config");
    let mut state = State::new(config, 1000);
    tick(&mut state, 1000.0, 0);
    let o = state.overview();
    let names: Vec<&str> = o.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["gen", "idle", "legacy", "pretty"]);
    let pretty = function(o, "pretty");
    assert_eq!(pretty.invocations_rps, None, "no rate from a first scrape");
    assert_eq!(pretty.p99_utilization, None);
    // In the order a request meets them, not the config's order.
    assert_eq!(pretty.event_types, ["viewer-request", "viewer-response"]);

    // Two seconds later, each PoP has counted what `PARIS` and `TOKYO` say.
    tick(&mut state, 1002.0, 1);
    let o = state.overview();
    let pretty = function(o, "pretty");
    // (60 + 40 at Paris + 100 at Tokyo) / 2 s.
    assert_eq!(pretty.invocations_rps, Some(100.0));
    // (10 + 4 + 6) / 2 s.
    assert_eq!(pretty.errors_rps, Some(10.0));
    assert_eq!(
        pretty.errors_by_kind,
        [
            ErrorKindRate {
                kind: "exception".into(),
                per_second: 8.0
            },
            ErrorKindRate {
                kind: "timeout".into(),
                per_second: 2.0
            },
        ]
    );
    assert_eq!(pretty.top_error_kind.as_deref(), Some("exception"));
    // Merged buckets: 197 of 200 at or under 30 %, 198 at or under 50 %: the 198th
    // observation (rank 0.99 × 200) is the last in the 30–50 bucket, so p99 is 50 %.
    // Neither PoP alone says 50: Paris's p99 is 30, Tokyo's is in 50–70.
    assert_eq!(pretty.p99_utilization, Some(50.0));

    let gen = function(o, "gen");
    assert_eq!(gen.event_types, ["origin-request"]);
    assert_eq!(gen.invocations_rps, Some(10.0));
    assert_eq!(gen.errors_rps, Some(0.5));
    assert_eq!(gen.top_error_kind.as_deref(), Some("invalid-output"));
    // Every invocation in the 70–90 bucket: p99 is 99 % of the way through it.
    let p99 = gen.p99_utilization.expect("gen ran");
    assert!((p99 - 89.8).abs() < 1e-9, "{p99}");

    // Configured and never invoked: listed with nothing happening, not left out.
    let idle = function(o, "idle");
    assert_eq!(idle.event_types, ["viewer-request"]);
    assert_eq!(idle.invocations_rps, Some(0.0));
    assert!(idle.errors_by_kind.is_empty() && idle.top_error_kind.is_none());
    assert_eq!(idle.p99_utilization, None);

    // What a PoP reports is shown; only configured functions get series.
    assert_eq!(function(o, "legacy").invocations_rps, Some(1.0));
    assert_eq!(
        state.series("function.pretty.p99_utilization", 1),
        Some(vec![Some(50.0)])
    );
    assert_eq!(
        state.series("function.pretty.invocations_rps", 1),
        Some(vec![Some(100.0)])
    );
    assert!(state.series("function.legacy.invocations_rps", 1).is_none());

    let json = serde_json::to_value(o).expect("the overview serializes");
    let first = &json["functions"][3];
    assert_eq!(first["name"], "pretty");
    assert_eq!(first["top_error_kind"], "exception");
    assert_eq!(first["errors_by_kind"][1]["kind"], "timeout");
}

#[test]
fn no_functions_no_list() {
    let config = Config::parse(
        "[deployment]\nname = \"n\"\nzone = \"n.example\"\n[network]\nsubnet = \"127.86.0.0/16\"\n\
         [[region]]\nname = \"east\"\nprimary = true\nlocation = { lat = 39.0, lon = -77.5 }\nazs = [\"east-a\"]\n\
         [[edge]]\nname = \"paris\"\nlocation = { lat = 48.9, lon = 2.4 }\n",
        "n.toml",
    )
    .expect("valid test config");
    let mut state = State::new(config, 1000);
    for at in [1000.0, 1001.0] {
        let scrapes = state
            .targets()
            .iter()
            .map(|_| Ok("meridian_edge_requests_total{pop=\"paris\",cache_status=\"hit\",status_class=\"2xx\"} 5\n".to_owned()))
            .collect();
        state.tick(at, scrapes);
    }
    assert!(state.overview().functions.is_empty());
}
