//! `POST /restart?node=NAME` (admin token): the supervisor stops one node (SIGTERM, so it
//! drains) and starts it again at once from its config file, which `meridian apply` has
//! rewritten. One node per call: the caller waits until the node is healthy again before
//! asking for the next, so its peers carry its traffic meanwhile.

use crate::fleet::Fleet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(crate) fn routes<F: Fleet>(
    r: meridian_http::admin::Router<Arc<F>>,
) -> meridian_http::admin::Router<Arc<F>> {
    r.guarded(
        &[http::Method::POST],
        "/restart",
        |shared, req| async move {
            let answer = |status: http::StatusCode, body: serde_json::Value| {
                meridian_http::json(status, body.to_string())
            };
            let Some(name) = meridian_http::percent::query_param(req.uri().query(), "node")
            else {
                return answer(
                    http::StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "give node=NAME" }),
                );
            };
            let Some(slot) = shared
                .slots()
                .iter()
                .find(|s| s.spec.name == name && s.active.load(Ordering::Acquire))
            else {
                return answer(
                    http::StatusCode::NOT_FOUND,
                    serde_json::json!({ "error": format!("no running node `{name}`") }),
                );
            };
            let pid = *slot.pid.lock().unwrap_or_else(|p| p.into_inner());
            let Some(pid) = pid else {
                return answer(
                    http::StatusCode::CONFLICT,
                    serde_json::json!({ "error": format!("`{name}` is between a crash and its restart") }),
                );
            };
            slot.restart_asked.store(true, Ordering::Release);
            // SAFETY: a signal to the pid of a child this supervisor started and waits on.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            shared.event(&format!("restart of node {name} asked (pid {pid})"));
            answer(
                http::StatusCode::ACCEPTED,
                serde_json::json!({ "node": name, "pid": pid }),
            )
        },
    )
}
