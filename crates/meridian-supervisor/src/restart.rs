//! `POST /restart?node=NAME` (admin token): the supervisor stops one node (SIGTERM, so it
//! drains) and starts it again at once from its config file, which `meridian apply` has
//! rewritten. One node per call: the caller waits until the node is healthy again before
//! asking for the next, so its peers carry its traffic meanwhile.

use crate::fleet::Fleet;
use http::StatusCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn routes<F: Fleet>(
    r: meridian_http::admin::Router<Arc<F>>,
) -> meridian_http::admin::Router<Arc<F>> {
    r.guarded(
        &[http::Method::POST],
        "/restart",
        |shared, req| async move {
            let answer = |status: StatusCode, body: serde_json::Value| {
                meridian_http::json(status, body.to_string())
            };
            let Some(name) = meridian_http::percent::query_param(req.uri().query(), "node") else {
                return answer(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "give node=NAME" }),
                );
            };
            match ask(&*shared, &name) {
                Ok(pid) => answer(
                    StatusCode::ACCEPTED,
                    serde_json::json!({ "node": name, "pid": pid }),
                ),
                Err((status, error)) => answer(status, serde_json::json!({ "error": error })),
            }
        },
    )
}

/// Stops `name`'s process so that its supervision loop starts it again at once, not
/// counted as a crash: the pid it had.
pub(crate) fn ask<F: Fleet>(fleet: &F, name: &str) -> Result<u32, (StatusCode, String)> {
    let Some(slot) = fleet
        .slots()
        .iter()
        .find(|s| s.spec.name == name && s.active.load(Ordering::Acquire))
    else {
        return Err((StatusCode::NOT_FOUND, format!("no running node `{name}`")));
    };
    let pid = *slot.pid.lock().unwrap_or_else(|p| p.into_inner());
    let Some(pid) = pid else {
        return Err((
            StatusCode::CONFLICT,
            format!("`{name}` is between a crash and its restart"),
        ));
    };
    slot.restart_asked.store(true, Ordering::Release);
    crate::fleet::signal(pid, libc::SIGTERM);
    fleet.event(&format!("restart of node {name} asked (pid {pid})"));
    Ok(pid)
}
