//! Tiered caching (`[distribution.tiered_cache]`): PoPs in front of regional edge caches
//! in front of the regions' balancers, each a real edge node on its own loopback address
//! (127.75/16 and 127.76/16), the balancers scripted origins that count what reaches them.

mod common;

use common::{eventually, get, send, serve_origin, Origin};
use std::net::SocketAddr;
use std::time::Duration;

/// Two regions, five PoPs, the tier on; `extra` goes into `[distribution.tiered_cache]`.
fn config(subnet: &str, extra: &str) -> meridian_config::Config {
    config_with(subnet, "\"lb:r1\", \"lb:r2\"", extra)
}

/// [`config`] with the origin group's `members`.
fn config_with(subnet: &str, members: &str, extra: &str) -> meridian_config::Config {
    let mut pops = String::new();
    for i in 1..=5 {
        pops.push_str(&format!(
            "[[edge]]\nname = \"p{i}\"\nlocation = {{ lat = {i}, lon = 0 }}\nmemory_cache = \"16MiB\"\ndisk_cache = \"0B\"\n\n"
        ));
    }
    let text = format!(
        r#"
[deployment]
name = "tier-test"
zone = "edge.test"

[network]
subnet = "{subnet}.0.0/16"

[[region]]
name = "r1"
primary = true
location = {{ lat = 0, lon = 0 }}
azs = ["r1a"]

[[region]]
name = "r2"
location = {{ lat = 50, lon = 50 }}
azs = ["r2a"]

{pops}
[dns]
servers = 0

[distribution]

[[distribution.origin_group]]
name = "o"
members = [{members}]
selection = "ordered"
connect_timeout = "300ms"
response_timeout = "2s"

[[distribution.behavior]]
path_pattern = "/secure/*"
origin_group = "o"
viewer_protocol_policy = "redirect-to-https"

[distribution.default_behavior]
origin_group = "o"

[distribution.tiered_cache]
memory_cache = "16MiB"
disk_cache = "0B"
{extra}
"#
    );
    meridian_config::Config::parse(&text, "tier.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// A deployment under test: its balancers' origins and the senders that keep each node up.
struct World {
    cfg: meridian_config::Config,
    balancers: Vec<Origin>,
    _origins: Vec<tokio::sync::oneshot::Sender<()>>,
    nodes: Vec<(String, tokio::sync::oneshot::Sender<()>)>,
}

impl World {
    async fn start(subnet: &str, extra: &str) -> World {
        World::start_with(config(subnet, extra), subnet).await
    }

    async fn start_with(cfg: meridian_config::Config, subnet: &str) -> World {
        let state = std::env::temp_dir().join(format!(
            "meridian-tier-test-{}-{}",
            std::process::id(),
            subnet.replace('.', "-")
        ));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).unwrap();
        // The deployment's edge signing key: what lets a regional cache trust a PoP.
        std::fs::write(
            state.join(meridian_http::signing::KEY_FILE),
            "tier-test-key\n",
        )
        .unwrap();
        let mut balancers = Vec::new();
        let mut origins = Vec::new();
        for (r, name) in [("r1", "balancer-r1"), ("r2", "balancer-r2")] {
            let o = Origin {
                name,
                ..Default::default()
            };
            origins.push(serve_origin(cfg.lb_address(r).unwrap(), o.clone()).await);
            balancers.push(o);
        }
        let mut nodes = Vec::new();
        let mut admins = Vec::new();
        // Regional caches first, as `up` starts them before any viewer arrives.
        let mut edges: Vec<_> = cfg
            .nodes()
            .into_iter()
            .filter(|n| n.role == meridian_config::Role::Edge)
            .collect();
        edges.sort_by_key(|n| !n.name.starts_with("edge-rec-"));
        for node in edges {
            let opts = meridian_edge::EdgeOptions::from_config(&cfg, &node, &state).unwrap();
            assert!(opts.signer.is_some(), "the signing key is read");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(meridian_edge::run(opts, async {
                let _ = rx.await;
            }));
            let admin = node.admin;
            eventually(&node.name, Duration::from_secs(20), || async move {
                tokio::net::TcpStream::connect(admin).await.is_ok()
            })
            .await;
            nodes.push((node.name.clone(), tx));
            admins.push((node.name.clone(), admin));
        }
        // Until an edge has probed a member, it ranks it after those it has seen healthy:
        // a PoP whose balancer probe came back before its regional cache's would go past
        // the tier. `up` waits for health too before any viewer arrives.
        for (name, admin) in admins {
            let what = format!("{name} sees every origin member healthy");
            eventually(&what, Duration::from_secs(30), || async move {
                let metrics = get(admin, "/metrics").await;
                let text = String::from_utf8_lossy(&metrics.body).into_owned();
                let members: Vec<&str> = text
                    .lines()
                    .filter(|l| l.starts_with("meridian_edge_origin_healthy{"))
                    .collect();
                !members.is_empty() && members.iter().all(|l| l.ends_with(" 1"))
            })
            .await;
        }
        World {
            cfg,
            balancers,
            _origins: origins,
            nodes,
        }
    }

    fn pop(&self, i: usize) -> SocketAddr {
        self.cfg.pop_addresses(&format!("p{i}")).unwrap().0
    }

    fn origin_requests(&self, path: &str) -> u32 {
        self.balancers.iter().map(|b| b.hits(path)).sum()
    }

    /// Stops node `name` (its listeners close: the machine is gone).
    fn stop(&mut self, name: &str) {
        let i = self.nodes.iter().position(|(n, _)| n == name).unwrap();
        let (_, tx) = self.nodes.remove(i);
        let _ = tx.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_misses_at_five_pops_make_one_origin_request_and_the_tier_shows() {
    let w = World::start("127.75", "").await;

    // 100 concurrent first requests for one object, 20 at each of 5 PoPs.
    let mut all = Vec::new();
    for k in 0..100 {
        let addr = w.pop(k % 5 + 1);
        all.push(tokio::spawn(async move { get(addr, "/slow/one").await }));
    }
    let mut ok = 0;
    for t in all {
        let got = t.await.unwrap();
        assert_eq!(got.status, 200, "{:?}", got.headers);
        ok += 1;
    }
    assert_eq!(ok, 100);
    assert_eq!(
        w.origin_requests("/slow/one"),
        1,
        "100 misses over 5 PoPs collapse to one origin request"
    );

    // A first miss at one PoP fills the region's cache; a second PoP's miss is a tier hit.
    let a = get(w.pop(1), "/cc/two").await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.h("cache-status"),
        "meridian-rec-r1; fwd=miss; stored, meridian-p1; fwd=miss; stored"
    );
    assert_eq!(a.h("x-origin"), "balancer-r1");
    let b = get(w.pop(2), "/cc/two").await;
    assert_eq!(b.status, 200);
    assert_eq!(
        b.h("cache-status"),
        "meridian-rec-r1; hit, meridian-p2; fwd=miss; stored",
        "the second PoP's miss is answered by the regional cache"
    );
    assert_eq!(b.h("x-cache"), "Miss from meridian");
    assert_eq!(w.origin_requests("/cc/two"), 1);
    // The PoP's own hit still names both caches, in RFC 9211's order.
    let c = get(w.pop(2), "/cc/two").await;
    assert!(
        c.h("cache-status").ends_with("meridian-p2; hit"),
        "{}",
        c.h("cache-status")
    );

    // Targeted cache control reaches the PoP through the regional cache (the PoP stores
    // by it too), and no viewer sees it.
    let first = get(w.pop(4), "/cdn/four").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.h("cache-control"), "no-store");
    assert_eq!(first.h("cdn-cache-control"), "", "never to a viewer");
    let again = get(w.pop(4), "/cdn/four").await;
    assert_eq!(
        again.h("x-cache"),
        "Hit from meridian",
        "{:?}",
        again.headers
    );
    assert_eq!(w.origin_requests("/cdn/four"), 1);

    // What no cache keeps goes straight to the balancer, past the tier.
    let p = send(w.pop(3), "POST", "/cc/three", &[]).await;
    assert_eq!(p.h("cache-status"), "meridian-p3; fwd=uri-miss");
    assert_eq!(w.origin_requests("/cc/three"), 1);

    // A viewer that names itself a tier cache without the edge signature is a viewer: the
    // regional cache runs its viewer rules (here, the redirect to HTTPS). Signed with the
    // deployment's key, as a PoP signs, the same request is a tier request.
    let rec = w.cfg.regional_cache_address("r1").unwrap();
    let forged = send(rec, "GET", "/secure/x", &[("meridian-tier", "p9")]).await;
    assert_eq!(forged.status, 301);
    let signer = meridian_http::signing::Signer::from_secrets("tier-test-key", None);
    // `/secure/x` to `addr` as a tier cache would ask for it, with signature `sig`.
    let as_tier = |addr, sig: http::HeaderValue| async move {
        let sig = sig.to_str().unwrap().to_owned();
        let headers = [
            ("meridian-tier", "p9"),
            (meridian_http::signing::HEADER, &*sig),
        ];
        send(addr, "GET", "/secure/x", &headers).await
    };
    // A signature for a balancer (which a balancer or an instance sees) is not one for a
    // regional cache: replayed with the tier header, it is a viewer's request.
    let for_origin = signer.sign(&http::Method::GET, "edge.test", "/secure/x");
    assert_eq!(as_tier(rec, for_origin).await.status, 301);
    let tier = meridian_http::signing::Audience::Tier;
    let sig = signer.sign_for(tier, &http::Method::GET, "edge.test", "/secure/x");
    let signed = as_tier(rec, sig.clone()).await;
    assert_eq!(signed.status, 200);
    assert_eq!(
        signed.h("cache-status"),
        "meridian-rec-r1; fwd=miss; stored"
    );
    // A PoP takes no tier requests at all: the same signed request is a viewer's there.
    assert_eq!(as_tier(w.pop(1), sig).await.status, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_regional_cache_down_pops_fall_back_to_its_balancer() {
    let mut w = World::start("127.76", "").await;
    let warm = get(w.pop(1), "/cc/warm").await;
    assert!(warm.h("cache-status").starts_with("meridian-rec-r1;"));

    w.stop("edge-rec-r1");
    let rec = w.cfg.regional_cache_address("r1").unwrap();
    eventually(
        "the regional cache stops",
        Duration::from_secs(10),
        || async move { tokio::net::TcpStream::connect(rec).await.is_err() },
    )
    .await;
    let (mut failed, mut straight) = (0, 0);
    for k in 0..30 {
        let got = get(w.pop(k % 5 + 1), &format!("/cc/after-{k}")).await;
        if got.status != 200 {
            failed += 1;
        }
        // From r1's balancer, not r2's: the region is still the nearest healthy one.
        assert_eq!(got.h("x-origin"), "balancer-r1");
        // A connection the stopped cache had already accepted may still finish a request
        // (it stops gracefully); every other request goes past it, to the balancer.
        if got.h("cache-status").starts_with("meridian-p") {
            straight += 1;
        }
    }
    assert_eq!(failed, 0, "no request fails while a regional cache is down");
    assert!(
        straight >= 25,
        "only {straight} of 30 went straight to the balancer"
    );
}

#[test]
fn an_unknown_origin_shield_region_is_refused_with_where_and_how() {
    let err = std::panic::catch_unwind(|| config("127.75", "origin_shield_region = \"mars-1\""))
        .err()
        .and_then(|e| e.downcast::<String>().ok())
        .expect("the config is refused");
    assert!(err.contains("tier.toml"), "{err}");
    assert!(
        err.contains("`mars-1` is not a region of this deployment"),
        "{err}"
    );
    assert!(err.contains("r1, r2"), "{err}");
    let line = config_line_of(&err);
    assert_eq!(line, Some(74), "{err}");
    assert!(err.contains("name one of the [[region]]s"), "{err}");
}

/// The line number in "tier.toml:<line>:<col>" of an error message.
fn config_line_of(err: &str) -> Option<usize> {
    let rest = &err[err.find("tier.toml:")? + "tier.toml:".len()..];
    rest.split(':').next()?.parse().ok()
}
