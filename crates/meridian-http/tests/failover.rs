//! The shared failover loop's rules, with a toy policy over plain addresses.

use http::{Request, Response};
use hyper::body::Incoming;
use meridian_http::failover::{run, Failover, Fault, Reason, Verdict};
use meridian_http::Body;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

/// Tries `addrs` in order; records what the loop told it.
struct Toy {
    addrs: Vec<SocketAddr>,
    next: usize,
    replayable: bool,
    retry_timeouts: bool,
    log: Vec<String>,
}

impl Toy {
    fn new(addrs: Vec<SocketAddr>, replayable: bool, retry_timeouts: bool) -> Self {
        Toy {
            addrs,
            next: 0,
            replayable,
            retry_timeouts,
            log: Vec::new(),
        }
    }
}

/// The status that ended the loop, or how it ended without one; and the log.
type Out = (Result<u16, String>, Vec<String>);

impl Failover for Toy {
    type Candidate = SocketAddr;
    type Output = Out;
    fn replayable(&self) -> bool {
        self.replayable
    }
    fn retry_timeouts(&self) -> bool {
        self.retry_timeouts
    }
    fn next(&mut self) -> Option<SocketAddr> {
        let a = *self.addrs.get(self.next)?;
        self.next += 1;
        Some(a)
    }
    fn more(&self) -> bool {
        self.next < self.addrs.len()
    }
    fn request(&mut self, c: &mut SocketAddr) -> Result<Request<Body>, Out> {
        Ok(Request::post(format!("http://{c}/"))
            .body(meridian_http::full("x"))
            .unwrap())
    }
    async fn answered(
        &mut self,
        _: SocketAddr,
        res: Response<Incoming>,
        _: Duration,
    ) -> Verdict<Out> {
        if res.status() == 503 {
            return Verdict::Next(Reason::Answer);
        }
        Verdict::Done((Ok(res.status().as_u16()), std::mem::take(&mut self.log)))
    }
    fn failed(
        &mut self,
        _: &mut SocketAddr,
        fault: Fault,
        _: Option<&hyper_util::client::legacy::Error>,
    ) {
        self.log.push(format!("failed {}", fault.as_str()));
    }
    fn stopped(&mut self, _: SocketAddr, fault: Fault) -> Out {
        (
            Err(format!("stopped {}", fault.as_str())),
            std::mem::take(&mut self.log),
        )
    }
    fn retrying(&mut self, reason: Reason) {
        self.log.push(format!("retry {reason:?}"));
    }
    fn exhausted(self) -> Out {
        (Err("exhausted".into()), self.log)
    }
}

/// A port nothing listens on.
async fn refused() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Accepts connections and closes them at once, or holds them without a word.
async fn broken(hold: bool) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            if hold {
                held.push(s);
            }
        }
    });
    addr
}

/// Answers every request with `status`.
async fn server(status: u16) -> SocketAddr {
    let l = meridian_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(meridian_http::serve(
        l,
        Default::default(),
        move |_| {
            hyper::service::service_fn(move |_req| async move {
                let code = http::StatusCode::from_u16(status).unwrap();
                Ok::<_, Infallible>(meridian_http::text(code, "hi"))
            })
        },
        std::future::pending(),
    ));
    addr
}

fn client() -> meridian_http::UpstreamClient {
    meridian_http::upstream_client(Duration::from_secs(1), Duration::from_secs(5))
}

const T: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_refused_connect_moves_on_even_when_the_request_cannot_be_replayed() {
    let toy = Toy::new(vec![refused().await, server(200).await], false, false);
    let (out, log) = run(&client(), T, toy).await;
    assert_eq!(out, Ok(200));
    assert_eq!(log, ["failed connect", "retry Fault(Connect)"]);
}

#[tokio::test]
async fn a_failure_after_sending_stops_unless_the_request_can_be_replayed() {
    let addrs = vec![broken(false).await, server(200).await];
    let (out, log) = run(&client(), T, Toy::new(addrs.clone(), false, false)).await;
    let stopped = out.unwrap_err();
    assert!(
        stopped == "stopped io" || stopped == "stopped reset",
        "{stopped}"
    );
    assert_eq!(log.len(), 1, "{log:?}");

    let (out, log) = run(&client(), T, Toy::new(addrs, true, false)).await;
    assert_eq!(out, Ok(200), "{log:?}");
}

#[tokio::test]
async fn timeouts_move_on_only_when_the_policy_says_so() {
    let addrs = vec![broken(true).await, server(200).await];
    let (out, log) = run(&client(), T, Toy::new(addrs.clone(), true, false)).await;
    assert_eq!(out, Err("stopped timeout".into()));
    assert_eq!(log, ["failed timeout"]);

    let (out, log) = run(&client(), T, Toy::new(addrs, true, true)).await;
    assert_eq!(out, Ok(200));
    assert_eq!(log, ["failed timeout", "retry Fault(Timeout)"]);
}

#[tokio::test]
async fn a_retry_is_counted_only_when_another_candidate_follows() {
    let addrs = vec![server(503).await, refused().await];
    let (out, log) = run(&client(), T, Toy::new(addrs, true, true)).await;
    assert_eq!(out, Err("exhausted".into()));
    assert_eq!(log, ["retry Answer", "failed connect"]);
}
