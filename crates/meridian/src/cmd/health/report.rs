//! Health reports for people: `meridian health --url` and `--state-dir`.
//!
//! The successor of the seed's `health_check_phase3.py`: check an endpoint's components,
//! classify each, score the whole, and say what to do about what is wrong.

use bytes::Bytes;
use http_body_util::Full;
use meridian_config::state::{DeploymentState, Status};
use meridian_config::Role;
use meridian_http::client::Fetched;
use serde::Serialize;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Verdict {
    fn points(self) -> f64 {
        match self {
            Verdict::Healthy => 100.0,
            Verdict::Degraded => 50.0,
            Verdict::Unhealthy => 0.0,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Verdict::Healthy => "OK  ",
            Verdict::Degraded => "WARN",
            Verdict::Unhealthy => "FAIL",
        }
    }
}

/// One checked component.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub name: String,
    /// Region and AZ, when checking a deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub az: Option<String>,
    pub url: String,
    pub verdict: Verdict,
    pub status_code: Option<u16>,
    pub response_ms: Option<f64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub checked_at: u64,
    pub overall: Verdict,
    /// 0 to 100: healthy components count fully, degraded ones half.
    pub score: f64,
    pub components: Vec<Component>,
    pub recommendations: Vec<String>,
}

impl Report {
    fn new(target: String, components: Vec<Component>, recommendations: Vec<String>) -> Self {
        let overall = components
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Unhealthy);
        let score = if components.is_empty() {
            0.0
        } else {
            let sum: f64 = components.iter().map(|c| c.verdict.points()).sum();
            (sum / components.len() as f64 * 10.0).round() / 10.0
        };
        Report {
            target,
            checked_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            overall,
            score,
            components,
            recommendations,
        }
    }

    /// True when nothing is unhealthy: what the exit code reports.
    pub fn passed(&self) -> bool {
        self.overall != Verdict::Unhealthy
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("`{0}` is not an http:// or https:// URL (for example http://127.10.1.1:8080)")]
    BadUrl(String),
    #[error("https needs the certificate authority to trust: give --cacert FILE (a deployment's development certificate is <state-dir>/tls/dev-cert.pem)")]
    Https,
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// How slow a response may be before it counts as degraded.
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub slow: Duration,
    pub timeout: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            slow: Duration::from_millis(1000),
            timeout: Duration::from_secs(5),
        }
    }
}

struct Base {
    addr: SocketAddr,
    tls: Option<meridian_http::client::Tls>,
    host: String,
    prefix: String,
    shown: String,
}

async fn parse_base(
    url: &str,
    roots: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Base, ReportError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| ReportError::BadUrl(url.to_owned()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(ReportError::BadUrl(url.to_owned())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ReportError::BadUrl(url.to_owned()))?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tls = match (https, roots) {
        (false, _) => None,
        (true, None) => return Err(ReportError::Https),
        (true, Some(config)) => Some(meridian_http::client::Tls {
            config: config.clone(),
            server_name: host.clone(),
        }),
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|source| ReportError::Resolve {
            host: host.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| ReportError::BadUrl(url.to_owned()))?;
    Ok(Base {
        addr,
        tls,
        host: authority.to_string(),
        prefix: uri.path().trim_end_matches('/').to_owned(),
        shown: url.trim_end_matches('/').to_owned(),
    })
}

fn request(
    base: &Base,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> http::Request<Full<Bytes>> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("{}{}", base.prefix, path))
        .header(http::header::HOST, &base.host)
        .header(http::header::USER_AGENT, "meridian-health/1.0");
    if body.is_some() {
        b = b.header(http::header::CONTENT_TYPE, "application/json");
    }
    b.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())))
}

/// Runs `check` on the response: it returns the verdict and a detail for a 2xx answer.
async fn component(
    name: &str,
    base: &Base,
    req: http::Request<Full<Bytes>>,
    th: &Thresholds,
    check: impl FnOnce(&Fetched) -> (Verdict, String),
) -> Component {
    let url = format!(
        "{}{}",
        base.shown,
        req.uri()
            .path()
            .strip_prefix(base.prefix.as_str())
            .unwrap_or("")
    );
    let res = meridian_http::client::fetch_with(
        None,
        base.tls.as_ref(),
        base.addr,
        req,
        th.timeout,
        4 << 20,
    )
    .await;
    let (verdict, code, ms, detail) = match res {
        Err(e) => (Verdict::Unhealthy, None, None, e.to_string()),
        Ok(f) => {
            let ms = (f.latency.as_secs_f64() * 1e4).round() / 10.0;
            let (mut v, mut detail) = if (200..300).contains(&f.status) {
                check(&f)
            } else {
                (
                    Verdict::Unhealthy,
                    format!("HTTP {}: {}", f.status, first_line(&f.body)),
                )
            };
            if v == Verdict::Healthy && f.latency > th.slow {
                v = Verdict::Degraded;
                detail = format!("{detail}; slow: {ms} ms (limit {} ms)", th.slow.as_millis());
            }
            (v, Some(f.status), Some(ms), detail)
        }
    };
    Component {
        name: name.to_owned(),
        region: None,
        az: None,
        url,
        verdict,
        status_code: code,
        response_ms: ms,
        detail,
    }
}

fn first_line(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let line = s.lines().next().unwrap_or("").trim();
    line.chars().take(120).collect()
}

fn json_body(f: &Fetched) -> Option<Value> {
    serde_json::from_slice(&f.body).ok()
}

fn status_word(v: &Value) -> Verdict {
    match v.get("status").and_then(Value::as_str) {
        Some("healthy") | Some("ok") | Some("pass") => Verdict::Healthy,
        Some("degraded") | Some("warn") => Verdict::Degraded,
        _ => Verdict::Unhealthy,
    }
}

/// Checks an application endpoint's components; `roots` says whom to trust for https.
pub async fn check_url(
    url: &str,
    th: &Thresholds,
    roots: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Report, ReportError> {
    let base = parse_base(url, roots).await?;
    let mut components = Vec::new();
    components.push(
        component(
            "health",
            &base,
            request(&base, "GET", "/health", None),
            th,
            |f| match json_body(f) {
                Some(v) => {
                    let verdict = status_word(&v);
                    (
                        verdict,
                        format!(
                            "status {}",
                            v.get("status").and_then(Value::as_str).unwrap_or("missing")
                        ),
                    )
                }
                None => (
                    Verdict::Degraded,
                    "answered 2xx but not with JSON".to_owned(),
                ),
            },
        )
        .await,
    );
    components.push(
        component(
            "detailed_health",
            &base,
            request(&base, "GET", "/health/detailed", None),
            th,
            |f| {
                let Some(v) = json_body(f) else {
                    return (
                        Verdict::Degraded,
                        "answered 2xx but not with JSON".to_owned(),
                    );
                };
                let Some(parts) = v.get("components").and_then(Value::as_object) else {
                    return (status_word(&v), "no per-component detail".to_owned());
                };
                let worst = parts
                    .values()
                    .map(status_word)
                    .max()
                    .unwrap_or(Verdict::Healthy);
                let bad: Vec<&String> = parts
                    .iter()
                    .filter(|(_, c)| status_word(c) != Verdict::Healthy)
                    .map(|(k, _)| k)
                    .collect();
                let detail = if bad.is_empty() {
                    format!("{} components healthy", parts.len())
                } else {
                    format!(
                        "not healthy: {}",
                        bad.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                // One sick dependency degrades the service; it is unhealthy only if /health says so.
                (worst.min(Verdict::Degraded), detail)
            },
        )
        .await,
    );
    let introspection = r#"{"query":"{ __schema { queryType { name } } }"}"#;
    components.push(
        component(
            "graphql",
            &base,
            request(&base, "POST", "/graphql", Some(introspection)),
            th,
            |f| match json_body(f) {
                Some(v) if v.pointer("/data/__schema/queryType/name").is_some() => {
                    (Verdict::Healthy, "introspection answered".to_owned())
                }
                Some(v) if v.get("errors").is_some() => {
                    (Verdict::Unhealthy, format!("errors: {}", v["errors"]))
                }
                _ => (
                    Verdict::Unhealthy,
                    "no GraphQL data in the answer".to_owned(),
                ),
            },
        )
        .await,
    );
    components.push(
        component(
            "metrics",
            &base,
            request(&base, "GET", "/metrics", None),
            th,
            |f| {
                let text = String::from_utf8_lossy(&f.body);
                let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
                if families > 0 {
                    (Verdict::Healthy, format!("{families} metric families"))
                } else {
                    (
                        Verdict::Degraded,
                        "no Prometheus metric families".to_owned(),
                    )
                }
            },
        )
        .await,
    );
    let recommendations = recommend(&components);
    Ok(Report::new(base.shown, components, recommendations))
}

fn recommend(components: &[Component]) -> Vec<String> {
    let mut out = Vec::new();
    for c in components {
        let r = match (c.name.as_str(), c.verdict, c.status_code) {
            (_, Verdict::Healthy, _) => continue,
            (_, _, None) => format!(
                "{}: nothing answered at {} ({}). Check that the service runs and listens there.",
                c.name, c.url, c.detail
            ),
            ("graphql", _, _) => format!("graphql: the GraphQL endpoint failed ({}). Check the API's schema and resolvers.", c.detail),
            ("metrics", _, _) => "metrics: expose Prometheus metrics at /metrics so dashboards and alarms can see the service.".to_owned(),
            (_, Verdict::Degraded, _) if c.detail.contains("slow") => format!(
                "{}: responses are slow ({}). Look at instance load, or scale out.",
                c.name, c.detail
            ),
            (name, _, _) => format!("{name}: {} — see the service's logs.", c.detail),
        };
        out.push(r);
    }
    if out.is_empty() {
        out.push("Everything answered well; no action needed.".to_owned());
    }
    out
}

/// Checks every node of a running deployment, in region and AZ order.
pub async fn check_state(state: &DeploymentState, th: &Thresholds) -> Report {
    let mut components = Vec::new();
    let mut recommendations = Vec::new();
    if state.status != Status::Running {
        recommendations.push(format!(
            "the deployment's status is {:?}: start it with `meridian up`",
            state.status
        ));
    }
    let mut nodes = state.nodes.clone();
    nodes.sort_by(|a, b| {
        (
            &a.spec.region,
            a.spec.role != Role::Lb,
            &a.spec.az,
            &a.spec.name,
        )
            .cmp(&(
                &b.spec.region,
                b.spec.role != Role::Lb,
                &b.spec.az,
                &b.spec.name,
            ))
    });
    let checks = nodes.into_iter().map(|n| {
        let th = th.clone();
        async move {
            let th = &th;
            let mut list = Vec::new();
            let base = Base {
                addr: n.spec.admin,
                tls: None,
                host: n.spec.admin.to_string(),
                prefix: String::new(),
                shown: format!("http://{}", n.spec.admin),
            };
            // A database keeper says which role it holds now, and why it is unhealthy.
            let db = n.spec.role == Role::Db;
            let own = component(
                &n.spec.name,
                &base,
                request(&base, "GET", "/health", None),
                th,
                move |f| match json_body(f) {
                    Some(v) => {
                        let mut detail = format!(
                            "status {}",
                            v.get("status").and_then(Value::as_str).unwrap_or("missing")
                        );
                        if let (Some(h), Some(t)) = (v.get("healthy_targets"), v.get("targets")) {
                            detail = format!("{detail}, {h}/{t} targets healthy");
                        }
                        if db {
                            for key in ["role", "detail"] {
                                if let Some(x) = v.get(key).and_then(Value::as_str) {
                                    detail = format!("{detail}, {key} {x}");
                                }
                            }
                        }
                        (status_word(&v), detail)
                    }
                    None => (Verdict::Degraded, "not JSON".to_owned()),
                },
            )
            .await;
            list.push(own);
            if n.spec.role == Role::Lb {
                // Through the balancer: proves it routes to an instance of its own region.
                let viewer = Base {
                    addr: n.spec.address,
                    tls: None,
                    host: n.spec.address.to_string(),
                    prefix: String::new(),
                    shown: format!("http://{}", n.spec.address),
                };
                let region = n.spec.region.clone().unwrap_or_default();
                let name = format!("{} (routing)", n.spec.name);
                let via = component(
                    &name,
                    &viewer,
                    request(&viewer, "GET", "/health", None),
                    th,
                    move |f| {
                        let served = f
                            .headers
                            .get("x-meridian-region")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if served == region {
                            let inst = f
                                .headers
                                .get("x-meridian-instance")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("?");
                            (Verdict::Healthy, format!("served by {inst}"))
                        } else {
                            (
                                Verdict::Unhealthy,
                                format!("served by region `{served}`, expected `{region}`"),
                            )
                        }
                    },
                )
                .await;
                list.push(via);
            }
            for c in &mut list {
                c.region = n.spec.region.clone();
                c.az = n.spec.az.clone();
            }
            list
        }
    });
    for list in futures_join(checks).await {
        components.extend(list);
    }
    recommendations.extend(
        recommend(&components)
            .into_iter()
            .filter(|r| !r.starts_with("Everything")),
    );
    if recommendations.is_empty() {
        recommendations.push("Every node answered well; no action needed.".to_owned());
    }
    Report::new(
        format!("deployment `{}`", state.deployment),
        components,
        recommendations,
    )
}

/// Runs futures concurrently, keeping their order.
async fn futures_join<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send,
{
    let mut set = tokio::task::JoinSet::new();
    let mut n = 0;
    for (i, f) in futs.enumerate() {
        n += 1;
        set.spawn(async move { (i, f.await) });
    }
    let mut out: Vec<Option<F::Output>> = (0..n).map(|_| None).collect();
    while let Some(Ok((i, v))) = set.join_next().await {
        out[i] = Some(v);
    }
    out.into_iter().flatten().collect()
}

/// The report as a person reads it.
pub fn render(report: &Report) -> String {
    let mut s = format!("Health of {}\n\n", report.target);
    let mut group = None;
    for c in &report.components {
        let g = (c.region.clone(), c.az.clone());
        if c.region.is_some() && group.as_ref() != Some(&g) {
            s.push_str(&format!(
                "{}{}\n",
                c.region.as_deref().unwrap_or(""),
                c.az.as_deref()
                    .map(|a| format!(" / {a}"))
                    .unwrap_or_default()
            ));
            group = Some(g);
        }
        let ms = c
            .response_ms
            .map(|m| format!("{m:>7.1} ms"))
            .unwrap_or_else(|| "      - ms".to_owned());
        s.push_str(&format!(
            "  [{}] {:<28} {ms}  {}\n",
            c.verdict.symbol(),
            c.name,
            c.detail
        ));
    }
    let count = |v: Verdict| report.components.iter().filter(|c| c.verdict == v).count();
    s.push_str(&format!(
        "\nscore {:.1}/100: {} healthy, {} degraded, {} unhealthy; overall {:?}\n",
        report.score,
        count(Verdict::Healthy),
        count(Verdict::Degraded),
        count(Verdict::Unhealthy),
        report.overall
    ));
    s.push_str("\nrecommendations:\n");
    for r in &report.recommendations {
        s.push_str(&format!("  - {r}\n"));
    }
    s
}
