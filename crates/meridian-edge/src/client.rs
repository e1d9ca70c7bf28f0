//! Talking to running PoPs from tools: `meridian invalidate` sends one invalidation to
//! every PoP at once and reports each as it completes.

use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What one PoP said to an invalidation.
#[derive(Debug, Clone)]
pub struct PopInvalidation {
    pub pop: String,
    pub admin: SocketAddr,
    /// Ok with the time it took, or why it failed.
    pub result: Result<Duration, String>,
}

/// Sends `paths` to every PoP's admin endpoint concurrently; `progress` sees each answer
/// as it arrives. Returns every PoP's result, in arrival order.
pub async fn invalidate_all(
    pops: Vec<(String, SocketAddr)>,
    token: &str,
    paths: &[String],
    id: &str,
    mut progress: impl FnMut(&PopInvalidation),
) -> Vec<PopInvalidation> {
    let body = serde_json::json!({ "paths": paths, "id": id }).to_string();
    let as_invalidation = |a: &PopAnswer| PopInvalidation {
        pop: a.pop.clone(),
        admin: a.admin,
        result: a
            .result
            .as_ref()
            .map(|(took, _)| *took)
            .map_err(Clone::clone),
    };
    call_all(
        pops,
        token,
        http::Method::POST,
        "/invalidate",
        Bytes::from(body),
        |a| progress(&as_invalidation(a)),
    )
    .await
    .iter()
    .map(as_invalidation)
    .collect()
}

/// What one PoP's admin endpoint answered to [`call_all`].
#[derive(Debug, Clone)]
pub struct PopAnswer {
    pub pop: String,
    pub admin: SocketAddr,
    /// Ok with the time it took and the body of a 200, or why it failed (unreachable,
    /// or the status and text of any other answer).
    pub result: Result<(Duration, Bytes), String>,
}

/// Sends one admin request (`method` `path`, `body`) to every PoP concurrently, with the
/// token; `progress` sees each answer as it arrives. The generic form of
/// [`invalidate_all`], for changes every PoP must apply (such as `meridian kvs put`).
pub async fn call_all(
    pops: Vec<(String, SocketAddr)>,
    token: &str,
    method: http::Method,
    path: &str,
    body: Bytes,
    mut progress: impl FnMut(&PopAnswer),
) -> Vec<PopAnswer> {
    let mut tasks = tokio::task::JoinSet::new();
    for (pop, admin) in pops {
        let (body, token, method, path) = (
            body.clone(),
            token.to_owned(),
            method.clone(),
            path.to_owned(),
        );
        tasks.spawn(async move {
            let started = Instant::now();
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, admin.to_string())
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::new(body));
            let result = match req {
                Err(e) => Err(e.to_string()),
                Ok(req) => {
                    match meridian_http::client::fetch(admin, req, Duration::from_secs(10), 1 << 20)
                        .await
                    {
                        Ok(f) if f.status == 200 => Ok((started.elapsed(), f.body)),
                        Ok(f) => Err(format!(
                            "answered {}: {}",
                            f.status,
                            String::from_utf8_lossy(&f.body).trim()
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            PopAnswer { pop, admin, result }
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            progress(&r);
            out.push(r);
        }
    }
    out
}
