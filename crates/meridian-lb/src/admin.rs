//! The load balancer's own endpoints, on the admin address (never the viewer port):
//! `/metrics`, `/health` and `/targets` (what `aws elbv2 describe-target-health` shows),
//! and with the admin token `POST /targets/register?target=ADDR&az=AZ[&name=NAME]` and
//! `POST /targets/deregister?target=NAME|ADDR` (ALB's RegisterTargets and
//! DeregisterTargets, for one target). `&twin=true` registers in the groups' green twins;
//! `&scope=groups|twins` deregisters from those only. Canary and blue/green
//! (`twins.rs`): `GET /target-groups`, and with the token
//! `POST /target-groups/twin?group=NAME` (make the twin) and
//! `POST /target-groups/weights?percent=P[&group=NAME]` (P% of the group's traffic, every
//! twinned group's without `group`, goes to its twin).

use crate::proxy::LoadBalancer;
use crate::registry::Scope;
use crate::target::TargetState;
use http::{Method, StatusCode};
use meridian_health::Health;
use meridian_http::admin::{Router, ANY};
use serde_json::json;
use tokio::net::TcpListener;

pub(crate) async fn serve(
    listener: TcpListener,
    lb: LoadBalancer,
    token: Option<meridian_http::secrets::AdminToken>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    Router::new(
        lb,
        "admin endpoints: /metrics, /health, /targets, /target-groups, POST /targets/register, POST /targets/deregister, POST /target-groups/twin, POST /target-groups/weights",
    )
    .token(token)
        .metrics(|lb| lb.metrics_text())
        .health(|lb| {
            let group = lb.group();
            let healthy = group.healthy_count();
            json!({
                "status": if healthy > 0 { "healthy" } else { "unhealthy" },
                "role": "lb",
                "name": lb.name(),
                // The config file it serves: `meridian apply` waits for the new one's.
                "config": lb.config_digest(),
                "healthy_targets": healthy,
                "targets": group.targets.len(),
                // Every group's count: the keys above are the default group's.
                "target_groups": lb
                    .groups()
                    .iter()
                    .map(|g| (g.name.clone(), json!({ "healthy_targets": g.healthy_count(), "targets": g.targets.len() })))
                    .collect::<serde_json::Map<_, _>>(),
            })
        })
        .open(ANY, "/targets", |lb, _| async move { targets(&lb) })
        .guarded(&[Method::POST], "/targets/register", |lb, req| async move {
            register(&lb, req.uri().query())
        })
        .guarded(&[Method::POST], "/targets/deregister", |lb, req| async move {
            deregister(&lb, req.uri().query())
        })
        .open(ANY, "/target-groups", |lb, _| async move {
            meridian_http::json(StatusCode::OK, lb.twins_json().to_string())
        })
        .guarded(&[Method::POST], "/target-groups/twin", |lb, req| async move {
            twin(&lb, req.uri().query())
        })
        .guarded(&[Method::POST], "/target-groups/weights", |lb, req| async move {
            weights(&lb, req.uri().query())
        })
        .serve(listener, shutdown)
        .await
}

/// What `aws elbv2 describe-target-health` shows.
fn targets(lb: &LoadBalancer) -> http::Response<meridian_http::Body> {
    let mut targets = Vec::new();
    for g in lb.all_groups() {
        let snapshot = g.board.snapshot();
        for t in &g.targets {
            let last = snapshot
                .iter()
                .find(|s| s.target == t.name)
                .and_then(|s| s.last_probe.clone());
            // ALB's AnomalyDetection, for groups where it runs (mitigation on).
            let anomaly = g.anomaly_mitigation().then(|| {
                json!({
                    "result": if t.anomaly.anomalous() { "anomalous" } else { "normal" },
                    "mitigation_in_effect": if t.anomaly.mitigated() { "yes" } else { "no" },
                    "error_rate": (t.anomaly.error_rate() * 1000.0).round() / 1000.0,
                    "latency_ms": (t.anomaly.latency() * 1e4).round() / 10.0,
                    "causes": t.anomaly.causes(),
                    "weight": t.anomaly.weight(),
                })
            });
            targets.push(json!({
                "target": t.name,
                "target_group": g.name,
                "az": t.az,
                "address": t.addr.to_string(),
                "health": match t.health.get() { Health::Healthy => "healthy", Health::Unhealthy => "unhealthy", Health::Unknown => "initial" },
                // ALB's states besides health: `draining` while deregistration lasts.
                "state": match t.state() { TargetState::Registered => "registered", TargetState::Draining => "draining", TargetState::Unused => "unused" },
                "outstanding_requests": t.outstanding(),
                "last_check": last,
                "anomaly_detection": anomaly,
            }));
        }
    }
    meridian_http::json(
        StatusCode::OK,
        json!({ "name": lb.name(), "targets": targets }).to_string(),
    )
}

fn bad(message: String) -> http::Response<meridian_http::Body> {
    meridian_http::json(
        StatusCode::BAD_REQUEST,
        json!({ "error": message }).to_string(),
    )
}

fn register(lb: &LoadBalancer, query: Option<&str>) -> http::Response<meridian_http::Body> {
    let Some(target) = meridian_http::percent::query_param(query, "target") else {
        return bad("give target=ADDR (ip:port) and az=AZ".into());
    };
    let Ok(addr) = target.parse::<std::net::SocketAddr>() else {
        return bad(format!("target `{target}` is not an ip:port address"));
    };
    let Some(az) = meridian_http::percent::query_param(query, "az") else {
        return bad("give az=AZ: groups choose their targets by AZ".into());
    };
    let name =
        meridian_http::percent::query_param(query, "name").unwrap_or_else(|| addr.to_string());
    let twin = meridian_http::percent::query_param(query, "twin").is_some_and(|v| v == "true");
    let joined = match twin {
        true => lb.register_target_in_twins(&name, addr, &az),
        false => lb.register_target(&name, addr, &az),
    };
    match joined {
        Ok(groups) => meridian_http::json(
            StatusCode::OK,
            json!({ "target": name, "address": addr.to_string(), "target_groups": groups })
                .to_string(),
        ),
        Err(e) => meridian_http::json(
            StatusCode::CONFLICT,
            json!({ "error": e.to_string() }).to_string(),
        ),
    }
}

fn deregister(lb: &LoadBalancer, query: Option<&str>) -> http::Response<meridian_http::Body> {
    let Some(target) = meridian_http::percent::query_param(query, "target") else {
        return bad("give target=NAME or target=ADDR".into());
    };
    let scope = match meridian_http::percent::query_param(query, "scope").as_deref() {
        None | Some("all") => Scope::All,
        Some("groups") => Scope::Groups,
        Some("twins") => Scope::Twins,
        Some(other) => return bad(format!("scope `{other}`: give all, groups or twins")),
    };
    match lb.deregister_from(&target, scope) {
        Ok(name) => meridian_http::json(
            StatusCode::ACCEPTED,
            json!({ "target": name, "state": "draining" }).to_string(),
        ),
        Err(e) => meridian_http::json(
            StatusCode::NOT_FOUND,
            json!({ "error": e.to_string() }).to_string(),
        ),
    }
}

fn twin(lb: &LoadBalancer, query: Option<&str>) -> http::Response<meridian_http::Body> {
    let Some(group) = meridian_http::percent::query_param(query, "group") else {
        return bad("give group=NAME: the target group to make a green twin of".into());
    };
    match lb.make_twin(&group) {
        Ok(twin) => meridian_http::json(
            StatusCode::OK,
            json!({ "target_group": group, "twin": twin }).to_string(),
        ),
        Err(e) => meridian_http::json(
            StatusCode::NOT_FOUND,
            json!({ "error": e.to_string() }).to_string(),
        ),
    }
}

fn weights(lb: &LoadBalancer, query: Option<&str>) -> http::Response<meridian_http::Body> {
    let Some(p) = meridian_http::percent::query_param(query, "percent") else {
        return bad(
            "give percent=P: the share (0 to 100) of the group's traffic for its twin".into(),
        );
    };
    let percent = match crate::twins::parse_percent(&p) {
        Ok(p) => p,
        Err(e) => return bad(e.to_string()),
    };
    let group = meridian_http::percent::query_param(query, "group");
    match lb.set_twin_percent(group.as_deref(), percent) {
        Ok(changed) => meridian_http::json(
            StatusCode::OK,
            json!({ "changed": changed.into_iter().map(|(g, p)| json!({ "target_group": g, "twin_percent": p })).collect::<Vec<_>>() })
                .to_string(),
        ),
        Err(e) => meridian_http::json(
            StatusCode::CONFLICT,
            json!({ "error": e.to_string() }).to_string(),
        ),
    }
}
