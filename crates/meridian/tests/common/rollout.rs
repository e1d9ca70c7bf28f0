//! What the rollout tests share: a steady load through the balancers that records every
//! answer, and the running instances as `endpoints.json` and the instances themselves say.

use super::{get, state};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answered request: when, through which balancer, which version answered (or the
/// failure).
pub type Seen = (Instant, String, Result<String, String>);

/// GETs of `/api/quotes/AAPL` through the balancers in turn, `pause` apart, until told to
/// stop (at most 20,000, or two minutes).
pub struct Load {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Load {
    pub fn start(lbs: Vec<String>, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let client =
                meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
            let began = Instant::now();
            let mut sent = 0usize;
            while !s.load(Ordering::Relaxed)
                && sent < 20_000
                && began.elapsed() < Duration::from_secs(120)
            {
                let lb = lbs[sent % lbs.len()].clone();
                sent += 1;
                let out = match get(&client, &format!("http://{lb}/api/quotes/AAPL")).await {
                    Ok((200, h, _)) => Ok(h
                        .get("x-service-version")
                        .and_then(|x| x.to_str().ok())
                        .unwrap_or("none")
                        .to_owned()),
                    Ok((status, _, body)) => {
                        Err(format!("{status} {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => Err(e.to_string()),
                };
                v.lock().unwrap().push((Instant::now(), lb, out));
                tokio::time::sleep(pause).await;
            }
        });
        Load { stop, task, seen }
    }

    /// How many requests have been answered (or failed) so far.
    pub fn answered(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Stops the load: every answer, in order.
    pub async fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}

/// The failed requests, each with its balancer.
pub fn failures(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|(_, lb, r)| r.as_ref().err().map(|e| format!("{lb}: {e}")))
        .collect()
}

/// The versions that answered, in order.
pub fn versions(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter_map(|(_, _, r)| r.as_ref().ok().cloned())
        .collect()
}

/// Every running service instance of endpoints.json: (name, address, version).
pub fn instances(state_dir: &std::path::Path) -> Vec<(String, String, String)> {
    state(state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "service")
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_owned(),
                n["address"].as_str().unwrap().to_owned(),
                n["version"].as_str().unwrap_or("none").to_owned(),
            )
        })
        .collect()
}

/// Each of the `count` instances answers for itself with `version`: in endpoints.json,
/// its header and its /health.
pub async fn assert_instances_run(state_dir: &std::path::Path, count: usize, version: &str) {
    let client = meridian_http::upstream_client(Duration::from_secs(5), Duration::from_secs(30));
    let all = instances(state_dir);
    assert_eq!(all.len(), count, "{all:?}");
    for (name, addr, v) in all {
        assert_eq!(v, version, "{name} in endpoints.json");
        let (status, h, body) = get(&client, &format!("http://{addr}/health"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{name}");
        assert_eq!(h["x-service-version"], version, "{name}");
        let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(health["service_version"], version, "{name}: {health}");
    }
}
