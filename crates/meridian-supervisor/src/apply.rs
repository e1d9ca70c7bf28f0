//! The supervisor's half of `meridian apply`: `GET /config` gives the config its nodes
//! run, `POST /config` (admin token, the new config's text as the body) takes a new one
//! for the nodes this supervisor runs. It is how a change reaches a host's agent on
//! another machine, so it does what only this host can: it writes the file its nodes read,
//! signals the nodes that reload in place (SIGHUP), restarts the others one at a time
//! behind their peers, and answers once each node runs the new config or was found not to.
//!
//! The plan is the CLI's (`meridian_config::diff`): the CLI shows it before asking; the
//! supervisor computes it again against what it really runs, so a second apply, or one
//! from another machine, cannot act on a stale picture.

use crate::fleet::Fleet;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use meridian_config::diff::{digest, moved_nodes, plan, NodePlan};
use meridian_config::{Config, Role};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest config text taken: far above any real deployment's.
const MAX_CONFIG: usize = 4 << 20;
/// How long a node may take to report the new config after its SIGHUP.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a restarted node may take to run again and answer healthy.
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// What became of one node's changes.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeOutcome {
    pub node: String,
    /// `reload` or `restart`.
    pub action: String,
    pub ok: bool,
    pub millis: u64,
    /// A restart's old and new pid.
    pub pids: Option<(u32, u32)>,
    pub error: Option<String>,
}

/// The answer to `POST /config`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Applied {
    /// The digest of the new config's text, which every node reports on `/health`.
    pub config: String,
    /// This supervisor's nodes' part of the plan, as `meridian apply` prints it.
    pub plan: String,
    /// Nodes of the plan that reload in place, and that restart.
    pub reloads: usize,
    pub restarts: usize,
    pub nodes: Vec<NodeOutcome>,
}

pub(crate) fn routes<F: Fleet>(
    r: meridian_http::admin::Router<Arc<F>>,
) -> meridian_http::admin::Router<Arc<F>> {
    let answer =
        |status: StatusCode, body: serde_json::Value| meridian_http::json(status, body.to_string());
    r.guarded(&[Method::GET], "/config", |shared, _| async move {
        // Guarded: a config can hold secrets (a webhook URL with its token).
        let text = shared.applied().lock().await.clone();
        let mut res = http::Response::new(meridian_http::full(text));
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/toml"),
        );
        res
    })
    .guarded(&[Method::POST], "/config", move |shared, req| async move {
        let plan_only = meridian_http::percent::query_param(req.uri().query(), "plan").as_deref()
            == Some("only");
        let text = match Limited::new(req.into_body(), MAX_CONFIG).collect().await {
            Ok(b) => match String::from_utf8(b.to_bytes().to_vec()) {
                Ok(t) => t,
                Err(_) => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({ "error": "the config is not UTF-8 text" }),
                    )
                }
            },
            Err(e) => {
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    serde_json::json!({ "error": format!("cannot read the config: {e}") }),
                )
            }
        };
        match take(shared, text, plan_only).await {
            Ok(applied) => meridian_http::json(
                StatusCode::OK,
                serde_json::to_string(&applied).unwrap_or_default(),
            ),
            Err((status, error)) => answer(status, serde_json::json!({ "error": error })),
        }
    })
}

/// Plans `text` against what runs and, unless `plan_only`, carries it out on this
/// supervisor's nodes. One apply at a time: the lock on the applied text is held until
/// every node has taken it.
async fn take<F: Fleet>(
    fleet: Arc<F>,
    text: String,
    plan_only: bool,
) -> Result<Applied, (StatusCode, String)> {
    let path = fleet.config_path().to_owned();
    // Parsed as the file it will be, so relative paths in it (a zone file, a function's
    // code) resolve where the nodes will read them.
    let new = Config::parse(&text, &path.display().to_string()).map_err(|e| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the config does not validate:\n{e}"),
        )
    })?;
    let mut applied = fleet.applied().lock().await;
    let old = Config::parse(&applied, &path.display().to_string()).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the running config no longer parses: {e}"),
        )
    })?;
    let moved = moved_nodes(&old, &new);
    let all = plan(&old, &new);
    // The autoscaling policy runs in `up`'s supervisor, made once at its start.
    let scaling = old.service.autoscaling != new.service.autoscaling;
    if !moved.is_empty() || scaling || all.nodes.iter().any(|n| n.role.is_none()) {
        let what = if !moved.is_empty() {
            format!("the nodes {}", moved.join(", "))
        } else if scaling {
            "[service.autoscaling]".to_owned()
        } else {
            "[supervisor] settings".to_owned()
        };
        return Err((
            StatusCode::CONFLICT,
            format!("the new config changes {what}, which only a new start of the deployment takes; nothing changed"),
        ));
    }
    let running = |name: &str| {
        fleet
            .slots()
            .iter()
            .any(|s| s.spec.name == name && s.active.load(Ordering::Acquire))
    };
    let mine = meridian_config::diff::Plan {
        nodes: all.nodes.into_iter().filter(|n| running(&n.node)).collect(),
    };
    let want = digest(&text);
    let mut out = Applied {
        config: want.clone(),
        plan: mine.to_string(),
        reloads: mine.reloads().count(),
        restarts: mine.restarts().count(),
        nodes: Vec::new(),
    };
    if plan_only || *applied == text {
        return Ok(out);
    }
    write_config(&*fleet, &text)?;

    let mut waits = Vec::new();
    for n in mine.reloads() {
        let Some(slot) = fleet.slots().iter().find(|s| s.spec.name == n.node) else {
            continue;
        };
        let pid = *slot.pid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pid) = pid {
            crate::fleet::signal(pid, libc::SIGHUP);
        }
        let admin = slot.spec.admin;
        let want = want.clone();
        waits.push((
            n.node.clone(),
            tokio::spawn(async move { reported(admin, &want, RELOAD_TIMEOUT).await }),
        ));
    }
    for (node, wait) in waits {
        let took = wait.await.ok().flatten();
        out.nodes.push(NodeOutcome {
            node,
            action: "reload".to_owned(),
            ok: took.is_some(),
            millis: took.map(|t| t.as_millis() as u64).unwrap_or(0),
            pids: None,
            error: took.is_none().then(|| {
                format!(
                    "did not report config {want} within {}s (see its log)",
                    RELOAD_TIMEOUT.as_secs()
                )
            }),
        });
    }
    let restarts: Vec<&NodePlan> = mine.restarts().collect();
    let mut stopped = false;
    for n in restarts {
        if stopped {
            // Said, not left out: the next apply of this config takes it up again.
            out.nodes.push(NodeOutcome {
                node: n.node.clone(),
                action: "restart".to_owned(),
                ok: false,
                millis: 0,
                pids: None,
                error: Some("not restarted: an earlier restart failed".to_owned()),
            });
            continue;
        }
        let began = Instant::now();
        let result = restart(&fleet, &n.node, &want).await;
        // The next node waits: its peers may be carrying this one's traffic.
        stopped = result.is_err();
        out.nodes.push(NodeOutcome {
            node: n.node.clone(),
            action: "restart".to_owned(),
            ok: result.is_ok(),
            millis: began.elapsed().as_millis() as u64,
            pids: result.as_ref().ok().copied(),
            error: result.err(),
        });
    }
    let failed: Vec<&str> = out
        .nodes
        .iter()
        .filter(|n| !n.ok)
        .map(|n| n.node.as_str())
        .collect();
    // What runs is the new config only once every node took it: until then the same config
    // applied again plans the same changes, instead of finding none.
    if failed.is_empty() {
        *applied = text;
    }
    fleet.event(&format!(
        "apply: config {want}: {} node(s) took it{}",
        out.nodes.len() - failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(", not taken by {}", failed.join(", "))
        }
    ));
    Ok(out)
}

/// Writes the new config where the nodes read it, and over the copy in the state dir.
fn write_config<F: Fleet>(fleet: &F, text: &str) -> Result<(), (StatusCode, String)> {
    let copy = fleet.state_dir().join("meridian.toml");
    let mut paths = vec![fleet.config_path().to_owned()];
    let same = std::fs::canonicalize(&copy)
        .ok()
        .zip(std::fs::canonicalize(fleet.config_path()).ok())
        .is_some_and(|(a, b)| a == b);
    if !same {
        paths.push(copy);
    }
    for path in paths {
        // Owner-only, through a temporary file renamed over the old one.
        meridian_http::tls::write_secret(&path, text.as_bytes()).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write {}: {e}; nothing changed", path.display()),
            )
        })?;
    }
    Ok(())
}

/// Restarts one node (as `POST /restart`), then waits for its new process to answer
/// healthy, with the new config when it reports one: (old pid, new pid).
async fn restart<F: Fleet>(fleet: &Arc<F>, name: &str, want: &str) -> Result<(u32, u32), String> {
    let from = crate::restart::ask(&**fleet, name).map_err(|(_, e)| e)?;
    let Some(slot) = fleet.slots().iter().find(|s| s.spec.name == name) else {
        return Err(format!("no node `{name}`"));
    };
    // Healthy where `up` calls it healthy; the nodes that reload say their config too.
    let addr = fleet.readiness(&slot.spec).0;
    let digest = matches!(slot.spec.role, Role::Edge | Role::Dns | Role::Lb).then_some(want);
    let began = Instant::now();
    while began.elapsed() < RESTART_TIMEOUT {
        let now = *slot.pid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(to) = now.filter(|p| *p != from) {
            if healthy(addr, digest).await {
                return Ok((from, to));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "not running and healthy again within {}s (see its log)",
        RESTART_TIMEOUT.as_secs()
    ))
}

/// Whether `addr` answers `/health` with 200 (and, when given, the config digest).
async fn healthy(addr: SocketAddr, digest: Option<&str>) -> bool {
    match meridian_http::client::call(
        addr,
        Method::GET,
        "/health",
        None,
        Duration::from_secs(2),
        1 << 20,
    )
    .await
    {
        Ok(a) if a.status == 200 => digest.is_none_or(|d| {
            serde_json::from_slice::<serde_json::Value>(&a.body).unwrap_or_default()["config"] == d
        }),
        _ => false,
    }
}

/// How long until the node at `admin` reports config `want` on `/health`, or None past
/// `bound`.
async fn reported(admin: SocketAddr, want: &str, bound: Duration) -> Option<Duration> {
    let began = Instant::now();
    while began.elapsed() < bound {
        if healthy(admin, Some(want)).await {
            return Some(began.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}
