//! Exports for real operations: the console's panels as a Grafana dashboard, and its
//! alarms as Prometheus recording and alerting rules over the same metrics.
//!
//! Both assume a Prometheus that scrapes every node's `/metrics` with one job per role,
//! named `meridian-<role>` (`meridian-edge`, `meridian-lb`, `meridian-dns`, ...).

use meridian_config::{AlarmKind, Config};
use serde_json::{json, Value};

/// Cache statuses that count as hits, as CloudFront's CacheHitRate counts them.
const HITS: &str = "hit|refresh_hit|stale_while_revalidate|stale_if_error";

struct Panel {
    title: &'static str,
    unit: &'static str,
    /// (PromQL, legend)
    queries: Vec<(String, &'static str)>,
}

fn panels() -> Vec<Panel> {
    let edge = "meridian_edge_requests_total";
    let lb = "meridian_lb_requests_total";
    vec![
        Panel {
            title: "Requests per second",
            unit: "reqps",
            queries: vec![
                (format!("sum(rate({edge}[1m]))"), "edges (viewers)"),
                (format!("sum(rate({lb}[1m]))"), "regions (load balancers)"),
            ],
        },
        Panel {
            title: "Error rate (4xx, 5xx)",
            unit: "percentunit",
            queries: vec![
                (format!("sum(rate({edge}{{status_class=\"5xx\"}}[1m])) / sum(rate({edge}[1m]))"), "edge 5xx"),
                (format!("sum(rate({edge}{{status_class=\"4xx\"}}[1m])) / sum(rate({edge}[1m]))"), "edge 4xx"),
                (format!("sum(rate({lb}{{status=~\"5..\"}}[1m])) / sum(rate({lb}[1m]))"), "region 5xx"),
            ],
        },
        Panel {
            title: "Cache hit rate by PoP",
            unit: "percentunit",
            queries: vec![("meridian:edge_cache_hit_rate:ratio_rate5m".to_owned(), "{{pop}}")],
        },
        Panel {
            title: "Latency p50 / p95",
            unit: "s",
            queries: vec![
                ("histogram_quantile(0.5, sum by (le) (rate(meridian_edge_request_duration_seconds_bucket[1m])))".to_owned(), "edge p50"),
                ("histogram_quantile(0.95, sum by (le) (rate(meridian_edge_request_duration_seconds_bucket[1m])))".to_owned(), "edge p95"),
                ("histogram_quantile(0.5, sum by (le) (rate(meridian_lb_request_duration_seconds_bucket[1m])))".to_owned(), "region p50"),
                ("histogram_quantile(0.95, sum by (le) (rate(meridian_lb_request_duration_seconds_bucket[1m])))".to_owned(), "region p95"),
            ],
        },
        Panel {
            title: "Bytes served and bytes from origins",
            unit: "Bps",
            queries: vec![
                ("sum(rate(meridian_edge_bytes_to_viewers_total[1m]))".to_owned(), "to viewers"),
                ("sum(rate(meridian_edge_bytes_from_origins_total[1m]))".to_owned(), "from origins"),
            ],
        },
        Panel {
            title: "Healthy instances per load balancer",
            unit: "short",
            queries: vec![("meridian:lb_healthy_host_count".to_owned(), "{{instance}}")],
        },
        Panel {
            title: "Origin round trip from each PoP",
            unit: "s",
            queries: vec![("meridian_edge_origin_rtt_seconds".to_owned(), "{{instance}} to {{origin}}")],
        },
        Panel {
            title: "DNS queries per second",
            unit: "reqps",
            queries: vec![("sum by (policy) (rate(meridian_dns_queries_total[1m]))".to_owned(), "{{policy}}")],
        },
        Panel {
            title: "Node restarts",
            unit: "short",
            queries: vec![("increase(meridian_supervisor_restarts_total[5m]) > 0".to_owned(), "{{node}}")],
        },
    ]
}

/// A Grafana dashboard (schema version 39) with the console's panels.
pub fn grafana(config: &Config) -> Value {
    let name = &config.deployment.name;
    let panels: Vec<Value> = panels()
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let targets: Vec<Value> = p
                .queries
                .iter()
                .enumerate()
                .map(|(j, (expr, legend))| {
                    json!({
                        "refId": ((b'A' + j as u8) as char).to_string(),
                        "datasource": { "type": "prometheus", "uid": "${datasource}" },
                        "expr": expr,
                        "legendFormat": legend,
                    })
                })
                .collect();
            json!({
                "id": i + 1,
                "type": "timeseries",
                "title": p.title,
                "datasource": { "type": "prometheus", "uid": "${datasource}" },
                "gridPos": { "h": 8, "w": 12, "x": (i % 2) * 12, "y": (i / 2) * 8 },
                "fieldConfig": { "defaults": { "unit": p.unit }, "overrides": [] },
                "options": { "legend": { "displayMode": "list", "placement": "bottom", "showLegend": true } },
                "targets": targets,
            })
        })
        .collect();
    json!({
        "title": format!("Meridian: {name}"),
        "uid": format!("meridian-{}", name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(30).collect::<String>()),
        "description": format!("Global, regional and PoP view of the Meridian deployment {name} (zone {}), exported by `meridian export grafana`.", config.deployment.zone),
        "tags": ["meridian"],
        "editable": true,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": { "from": "now-1h", "to": "now" },
        "timezone": "browser",
        "graphTooltip": 1,
        "templating": { "list": [{
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "hide": 0,
        }]},
        "annotations": { "list": [] },
        "panels": panels,
    })
}

fn yaml_str(s: &str) -> String {
    // JSON strings are valid YAML double-quoted scalars.
    Value::String(s.to_owned()).to_string()
}

/// Prometheus recording and alerting rules: CloudFront's 5xxErrorRate and CacheHitRate, the
/// ALB's HealthyHostCount, and one alert per `[[console.alarm]]` of the config.
pub fn prometheus_rules(config: &Config) -> String {
    let edge = "meridian_edge_requests_total";
    let records = [
        (
            "meridian:edge_requests:rate1m",
            format!("sum by (pop) (rate({edge}[1m]))"),
        ),
        (
            "meridian:edge_5xx_error_rate:ratio_rate1m",
            format!("sum by (pop) (rate({edge}{{status_class=\"5xx\"}}[1m])) / sum by (pop) (rate({edge}[1m]))"),
        ),
        (
            "meridian:edge_cache_hit_rate:ratio_rate5m",
            format!("sum by (pop) (rate({edge}{{cache_status=~\"{HITS}\"}}[5m])) / sum by (pop) (rate({edge}{{cache_status=~\"{HITS}|miss\"}}[5m]))"),
        ),
        (
            "meridian:lb_5xx_error_rate:ratio_rate1m",
            "sum by (instance) (rate(meridian_lb_requests_total{status=~\"5..\"}[1m])) / sum by (instance) (rate(meridian_lb_requests_total[1m]))".to_owned(),
        ),
        (
            "meridian:lb_healthy_host_count",
            "sum by (instance) (meridian_lb_target_healthy)".to_owned(),
        ),
    ];
    let mut out = String::new();
    out.push_str(&format!(
        "# Prometheus rules for the Meridian deployment {} (meridian export prometheus-rules).\n\
         # Scrape every node's /metrics with one job per role: meridian-edge, meridian-lb, ...\n\
         groups:\n  - name: meridian-recording\n    rules:\n",
        config.deployment.name
    ));
    for (name, expr) in &records {
        out.push_str(&format!(
            "      - record: {name}\n        expr: {}\n",
            yaml_str(expr)
        ));
    }
    out.push_str("  - name: meridian-alerts\n    rules:\n");
    for a in &config.console.alarms {
        let pct = a.threshold;
        let (expr, summary) = match a.kind {
            AlarmKind::ErrorRate => (
                format!(
                    "(meridian:edge_5xx_error_rate:ratio_rate1m > {pct}) or (meridian:lb_5xx_error_rate:ratio_rate1m > {pct})"
                ),
                format!("5xx error rate above {:.1}%", pct * 100.0),
            ),
            AlarmKind::HitRate => (
                format!("meridian:edge_cache_hit_rate:ratio_rate5m < {pct}"),
                format!("cache hit rate below {:.0}%", pct * 100.0),
            ),
            AlarmKind::RegionUnhealthy => (
                "(meridian:lb_healthy_host_count == 0) or (up{job=\"meridian-lb\"} == 0)".to_owned(),
                "a region has no healthy instance or its load balancer is down".to_owned(),
            ),
            AlarmKind::PopUnreachable => (
                "up{job=\"meridian-edge\"} == 0".to_owned(),
                "an edge PoP does not answer".to_owned(),
            ),
            AlarmKind::ReplicationLag => (
                format!("meridian_db_replication_lag_seconds > {pct}"),
                format!("a database replica more than {pct}s behind its primary"),
            ),
            // Every primary (not in recovery) with no standby in sync state `sync`.
            AlarmKind::NoSyncStandby => (
                "(meridian_db_in_recovery == 0) unless on(instance) (meridian_db_standbys{sync_state=\"sync\"} == 1)".to_owned(),
                "a database primary commits without a synchronous standby".to_owned(),
            ),
        };
        let alert: String = a
            .name
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let severity = match a.kind {
            AlarmKind::RegionUnhealthy | AlarmKind::PopUnreachable => "critical",
            _ => "warning",
        };
        out.push_str(&format!(
            "      - alert: {alert}\n        expr: {}\n        for: {}s\n        labels:\n          severity: {severity}\n          deployment: {}\n        annotations:\n          summary: {}\n",
            yaml_str(&expr),
            a.for_.as_secs(),
            yaml_str(&config.deployment.name),
            yaml_str(&summary),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_panels_have_unique_ids_and_queries() {
        let c = Config::embedded_default();
        let d = grafana(&c);
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 8);
        let mut ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        ids.dedup();
        assert_eq!(ids.len(), panels.len());
        for p in panels {
            assert!(!p["targets"].as_array().unwrap().is_empty(), "{p}");
        }
    }

    #[test]
    fn rules_name_cloudfront_and_alb_metrics_and_every_alarm() {
        let c = Config::embedded_default();
        let r = prometheus_rules(&c);
        for want in [
            "meridian:edge_5xx_error_rate:ratio_rate1m",
            "meridian:edge_cache_hit_rate:ratio_rate5m",
            "meridian:lb_healthy_host_count",
        ] {
            assert!(r.contains(&format!("record: {want}")), "{r}");
        }
        assert_eq!(
            r.matches("- alert: ").count(),
            c.console.alarms.len(),
            "{r}"
        );
    }
}
