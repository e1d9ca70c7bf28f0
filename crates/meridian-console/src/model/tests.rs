use super::*;
use crate::alarms::State as AlarmState;
use std::collections::BTreeMap;

const CONFIG: &str = r#"
[deployment]
name = "t"
zone = "t.example"

[network]
subnet = "127.88.0.0/16"

[[region]]
name = "east"
primary = true
location = { lat = 39.0, lon = -77.5 }
azs = ["east-a"]

[[region]]
name = "west"
location = { lat = 53.3, lon = -6.3 }
azs = ["west-a"]

[service]
instances_per_az = 2

[[edge]]
name = "paris"
location = { lat = 48.9, lon = 2.4 }

[console]
[[console.alarm]]
name = "region-down"
kind = "region_unhealthy"
for = "0s"

[[console.alarm]]
name = "errors"
kind = "error_rate"
threshold = 0.1
window = "5s"
min_requests = 10
for = "2s"

[[console.alarm]]
name = "pop-gone"
kind = "pop_unreachable"

[console.prices]
data_out_per_gb = 1.0
requests_per_million = 1000000.0
instance_hour = 3600.0
"#;

/// Metric text for every target, with per-target overrides.
struct World {
    state: State,
    text: BTreeMap<String, Result<String, String>>,
}

impl World {
    fn new() -> World {
        World::of(CONFIG)
    }

    fn of(text: &str) -> World {
        let config = Config::parse(text, "test.toml").expect("valid test config");
        let state = State::new(config, 1000);
        let mut text = BTreeMap::new();
        for t in state.targets() {
            text.insert(t.name.clone(), Ok(String::new()));
        }
        World { state, text }
    }

    fn set(&mut self, node: &str, metrics: &str) {
        self.text.insert(node.to_owned(), Ok(metrics.to_owned()));
    }

    fn down(&mut self, node: &str) {
        self.text
            .insert(node.to_owned(), Err("connection refused".to_owned()));
    }

    fn tick(&mut self, t: f64) -> Vec<Transition> {
        let scrapes = self
            .state
            .targets()
            .iter()
            .map(|t| self.text[&t.name].clone())
            .collect();
        self.state.tick(t, scrapes)
    }
}

fn lb(healthy: [u8; 2], az: &str, requests: u64, errors: u64, bytes: u64) -> String {
    format!(
        "meridian_lb_target_healthy{{target=\"svc-{az}-1\",az=\"{az}\"}} {}\n\
         meridian_lb_target_healthy{{target=\"svc-{az}-2\",az=\"{az}\"}} {}\n\
         meridian_lb_requests_total{{target=\"svc-{az}-1\",status=\"200\"}} {requests}\n\
         meridian_lb_requests_total{{target=\"none\",status=\"503\"}} {errors}\n\
         meridian_lb_response_bytes_total {bytes}\n\
         meridian_lb_request_duration_seconds_bucket{{le=\"0.01\"}} {requests}\n\
         meridian_lb_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n",
        healthy[0],
        healthy[1],
        requests + errors
    )
}

fn edge(hits: u64, misses: u64, failovers: u64) -> String {
    format!(
        "meridian_edge_requests_total{{pop=\"paris\",cache_status=\"hit\",status_class=\"2xx\"}} {hits}\n\
         meridian_edge_requests_total{{pop=\"paris\",cache_status=\"miss\",status_class=\"2xx\"}} {misses}\n\
         meridian_edge_requests_total{{pop=\"paris\",cache_status=\"pass\",status_class=\"2xx\"}} 7\n\
         meridian_edge_origin_healthy{{origin=\"lb:east\",group=\"regions\"}} 1\n\
         meridian_edge_origin_healthy{{origin=\"lb:west\",group=\"regions\"}} 1\n\
         meridian_edge_origin_rtt_seconds{{origin=\"lb:east\",group=\"regions\"}} 0.080\n\
         meridian_edge_origin_rtt_seconds{{origin=\"lb:west\",group=\"regions\"}} 0.020\n\
         meridian_edge_origin_failovers_total{{reason=\"timeout\"}} {failovers}\n\
         meridian_edge_bytes_to_viewers_total {}\n",
        (hits + misses) * 1000
    )
}

#[test]
fn regional_edge_caches_are_shown_apart_from_the_pops() {
    let text = format!("{CONFIG}\n[distribution.tiered_cache]\n");
    let mut w = World::of(&text);
    w.set("edge-rec-east", &edge(0, 0, 0));
    w.set("edge-paris", &edge(0, 0, 0));
    w.tick(1000.0);
    // The cache in east answered 30 of 40 lookups from the PoPs: what it saved the origins.
    w.set("edge-rec-east", &edge(30, 10, 0));
    w.set("edge-paris", &edge(0, 40, 0));
    w.down("edge-rec-west");
    w.tick(1002.0);
    let o = w.state.overview();
    let names: Vec<&str> = o.regional_caches.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["rec-east", "rec-west"]);
    assert_eq!(o.regional_caches[0].hit_rate, Some(0.75));
    assert!(o.regional_caches[0].up);
    assert!(!o.regional_caches[1].up, "west's cache is down");
    assert_eq!(o.pops.len(), 1, "a regional cache is not a PoP");
    // Viewer totals are the PoPs' alone: the tier's requests are not counted again.
    assert_eq!(o.global.hit_rate, Some(0.0));
}

#[test]
fn regions_pops_rates_and_routing_preference_from_metric_text() {
    let mut w = World::new();
    w.set("lb-east", &lb([1, 1], "east-a", 100, 0, 0));
    w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
    w.set("edge-paris", &edge(0, 0, 0));
    w.tick(1000.0);
    let o = w.state.overview();
    assert_eq!(o.regions[0].status, Status::Healthy);
    assert_eq!(o.regions[0].rps, None, "no rate from a first scrape");
    // Two seconds later: 200 more requests, 10 of them 5xx; 30 hits, 10 misses.
    w.set("lb-east", &lb([1, 1], "east-a", 290, 10, 4000));
    w.set("edge-paris", &edge(30, 10, 0));
    w.tick(1002.0);
    let o = w.state.overview();
    let east = &o.regions[0];
    assert_eq!(east.rps, Some(100.0));
    assert_eq!(east.err5xx_rps, Some(5.0));
    assert_eq!((east.healthy, east.total), (2, 2));
    assert!(
        east.p50_ms.is_some_and(|p| p > 0.0 && p <= 10.0),
        "{east:?}"
    );
    let paris = &o.pops[0];
    assert_eq!(paris.hit_rate, Some(0.75), "pass is not cacheable");
    assert_eq!(
        paris.preferred.as_deref(),
        Some("west"),
        "shortest healthy RTT"
    );
    assert_eq!(paris.bytes_out_rate, Some(20_000.0));
    assert_eq!(o.global.hit_rate, Some(0.75));
    // 5xx per second over every request per second: 5 of (100 region + 20 edge).
    let er = o.global.error_rate.unwrap();
    assert!((er - 5.0 / 120.0).abs() < 1e-9, "{er}");
    // Series exist for the charts.
    assert!(w.state.series("global.edge_rps", 5).is_some());
    assert_eq!(
        w.state.series("region.east.requests", 3).unwrap(),
        vec![Some(0.0), None, Some(200.0)],
        "1001 was not scraped: a gap, not a zero"
    );
}

#[test]
fn an_unhealthy_region_fires_its_alarm_and_the_timeline_says_why() {
    let mut w = World::new();
    w.set("lb-east", &lb([1, 1], "east-a", 0, 0, 0));
    w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
    w.set("edge-paris", &edge(0, 0, 0));
    assert!(w.tick(1000.0).is_empty());
    // One instance fails its checks: degraded, no alarm.
    w.set("lb-west", &lb([1, 0], "west-a", 0, 0, 0));
    assert!(w.tick(1001.0).is_empty());
    assert_eq!(w.state.overview().regions[1].status, Status::Degraded);
    // Both: unhealthy, and the alarm (for = 0s) fires at once.
    w.set("lb-west", &lb([0, 0], "west-a", 0, 0, 0));
    let t = w.tick(1002.0);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!(
        (t[0].alarm.as_str(), t[0].subject.as_str(), t[0].state),
        ("region-down", "west", "ALARM")
    );
    let o = w.state.overview();
    assert_eq!(o.regions[1].status, Status::Unhealthy);
    assert!(o
        .alarms
        .iter()
        .any(|a| a.rule == "region-down" && a.state == AlarmState::Alarm));
    assert!(o
        .events
        .iter()
        .any(|e| e.kind == Kind::Health && e.message.contains("svc-west-a-1 is unhealthy")));
    // An instance the console cannot reach is not healthy, whatever its balancer says.
    w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
    w.down("svc-west-a-1");
    w.down("svc-west-a-2");
    assert!(w.tick(1003.0).is_empty(), "still firing, no new transition");
    assert_eq!(w.state.overview().regions[1].status, Status::Unhealthy);
    // Back: the alarm clears.
    w.set("svc-west-a-1", "");
    w.set("svc-west-a-2", "");
    let t = w.tick(1004.0);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].state, "OK");
    assert_eq!(w.state.overview().regions[1].status, Status::Healthy);
    // A balancer that does not answer makes its region unhealthy too.
    w.down("lb-east");
    let t = w.tick(1005.0);
    assert_eq!(t[0].subject, "east");
    let o = w.state.overview();
    assert!(!o.regions[0].lb_up);
    assert!(o
        .nodes
        .iter()
        .any(|n| n.name == "lb-east" && !n.up && n.error.as_deref() == Some("connection refused")));
    assert!(o
        .events
        .iter()
        .any(|e| e.message == "lb-east stopped answering"));
}

#[test]
fn error_rate_needs_volume_and_duration_and_pops_can_vanish() {
    let mut w = World::new();
    w.set("lb-east", &lb([1, 1], "east-a", 0, 0, 0));
    w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
    w.set("edge-paris", &edge(0, 0, 0));
    w.tick(1000.0);
    // 5 of 5 requests fail: above the threshold but below min_requests.
    w.set("lb-east", &lb([1, 1], "east-a", 0, 5, 0));
    assert!(w.tick(1001.0).is_empty());
    // 20 of 25 in the window: breached, but it must hold for 2 s.
    w.set("lb-east", &lb([1, 1], "east-a", 5, 20, 0));
    assert!(w.tick(1002.0).is_empty());
    assert!(w.tick(1003.0).is_empty());
    let t = w.tick(1004.0);
    assert_eq!(t.len(), 1, "{t:?}");
    assert_eq!((t[0].alarm.as_str(), t[0].state), ("errors", "ALARM"));
    assert!(t[0].detail.contains("20 of 25"), "{}", t[0].detail);
    // The PoP stops answering: unreachable alarm, shown as such, not dropped.
    w.set("edge-paris", &edge(0, 0, 3));
    w.tick(1005.0);
    assert!(w
        .state
        .overview()
        .events
        .iter()
        .any(|e| e.kind == Kind::Failover && e.cause.contains("timeout x3")));
    w.down("edge-paris");
    let t = w.tick(1006.0);
    assert!(
        t.iter()
            .any(|t| t.alarm == "pop-gone" && t.subject == "pop:paris"),
        "{t:?}"
    );
    let o = w.state.overview();
    assert_eq!(o.pops.len(), 1);
    assert_eq!(o.pops[0].status, Status::Unhealthy);
    assert!(!o.pops[0].up);
}

#[test]
fn restarts_and_invalidations_are_events() {
    let mut w = World::new();
    let sup = |n: u64| {
        format!("meridian_supervisor_restarts_total{{node=\"svc-east-a-1\",role=\"service\",region=\"east\"}} {n}\n")
    };
    w.set("supervisor", &sup(0));
    w.set("edge-paris", "meridian_edge_invalidation_paths_total 0\n");
    w.tick(1000.0);
    w.set("supervisor", &sup(1));
    w.set("edge-paris", "meridian_edge_invalidation_paths_total 2\n");
    w.tick(1001.0);
    let o = w.state.overview();
    assert!(
        o.events
            .iter()
            .any(|e| e.kind == Kind::Restart && e.subject == "svc-east-a-1"),
        "{:?}",
        o.events
    );
    assert!(o
        .events
        .iter()
        .any(|e| e.kind == Kind::Invalidation && e.message == "edge-paris invalidated 2 path(s)"));
    let node = o.nodes.iter().find(|n| n.name == "svc-east-a-1").unwrap();
    assert_eq!(node.restarts, 1);
    // The supervisor is a source, not a node of the deployment.
    assert!(o.nodes.iter().all(|n| n.name != "supervisor"));
}

#[test]
fn cost_uses_measured_traffic_and_the_price_table() {
    let mut w = World::new();
    w.set("lb-east", &lb([1, 1], "east-a", 0, 0, 0));
    w.set("lb-west", &lb([1, 1], "west-a", 0, 0, 0));
    w.tick(1000.0);
    // 2 requests and 1 GB out in one second; the two east instances run.
    w.set("lb-east", &lb([1, 1], "east-a", 2, 0, 1_000_000_000));
    w.tick(1001.0);
    let east = w.state.overview().cost[0].clone();
    assert_eq!(east.place, "east");
    assert_eq!(east.requests, 2.0);
    assert!((east.gb_out - 1.0).abs() < 1e-9);
    // Two ticks of two instances at one second each: 4 instance-seconds.
    assert!(
        (east.instance_hours - 4.0 / 3600.0).abs() < 1e-9,
        "{east:?}"
    );
    // $1 per request, $1 per GB, $1 per instance-second.
    assert!((east.total - (2.0 + 1.0 + 4.0)).abs() < 1e-6, "{east:?}");
    // Per hour at the last minute's rate: 2 req + 1 GB in the minute, 2 instances.
    assert!(
        (east.per_hour - ((2.0 + 1.0) * 60.0 + 2.0 * 3600.0)).abs() < 1e-6,
        "{east:?}"
    );
}

#[test]
fn a_rollback_is_an_event_with_its_reason() {
    let mut w = World::new();
    let series = |state: &str, reason: &str| {
        format!("meridian_supervisor_rollout{{version=\"3-broken\",previous=\"2\",state=\"{state}\",reason=\"{reason}\"}} 1\n")
    };
    w.set("supervisor", "meridian_supervisor_restarts_total{node=\"svc-east-a-1\",role=\"service\",region=\"east\"} 0\n");
    w.tick(1000.0);
    w.set("supervisor", &series("running", ""));
    w.tick(1001.0);
    let why = "svc-east-a-1 (version 3-broken) did not pass its health checks within 4s";
    w.set(
        "supervisor",
        &format!(
            "{}{}",
            series("running", "").replace("} 1", "} 0"),
            series("rolled_back", why)
        ),
    );
    w.tick(1002.0);
    let events = w.state.overview().events.clone();
    let deployments: Vec<_> = events
        .iter()
        .filter(|e| e.kind == Kind::Deployment)
        .collect();
    assert_eq!(deployments.len(), 2, "{events:?}");
    assert!(deployments.iter().any(|e| e.message.contains("started")));
    let back = deployments
        .iter()
        .find(|e| e.message == "rollout to version 3-broken rolled back to 2")
        .expect("the rollback");
    assert_eq!(back.cause, why);
    assert_eq!(back.severity, Severity::Warning);
}

#[test]
fn scaling_activities_are_events_and_regions_show_their_counts() {
    let mut w = World::new();
    let series = |desired: u32, running: u32, out: u32, inward: u32| {
        format!(
            "meridian_supervisor_desired_instances{{region=\"east\"}} {desired}\nmeridian_supervisor_running_instances{{region=\"east\"}} {running}\nmeridian_supervisor_scaling_events_total{{region=\"east\",direction=\"out\"}} {out}\nmeridian_supervisor_scaling_events_total{{region=\"east\",direction=\"in\"}} {inward}\n"
        )
    };
    w.set("supervisor", &series(2, 2, 0, 0));
    w.tick(1000.0);
    w.set("supervisor", &series(3, 2, 1, 0));
    w.tick(1001.0);
    w.set("supervisor", &series(3, 3, 1, 0));
    w.tick(1002.0);
    let o = w.state.overview();
    let east = o.regions.iter().find(|r| r.name == "east").unwrap();
    assert_eq!((east.desired, east.running), (Some(3), Some(3)));
    let west = o.regions.iter().find(|r| r.name == "west").unwrap();
    assert_eq!((west.desired, west.running), (None, None));
    let scaling: Vec<_> = o
        .events
        .iter()
        .filter(|e| e.kind == Kind::Scaling)
        .collect();
    assert_eq!(scaling.len(), 1, "{:?}", o.events);
    assert_eq!(scaling[0].message, "east scaled out to 3 instances");
    w.set("supervisor", &series(2, 2, 1, 1));
    w.tick(1003.0);
    let o = w.state.overview();
    assert!(o
        .events
        .iter()
        .any(|e| e.kind == Kind::Scaling && e.message == "east scaled in to 2 instances"));
}
