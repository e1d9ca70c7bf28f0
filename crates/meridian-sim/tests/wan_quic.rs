//! The WAN relays QUIC: with HTTP/3 on, a PoP's HTTPS port is relayed over UDP too, each
//! datagram delayed by the modelled one-way time each way, in order, from the sender's
//! own address. Subnet 127.102.0.0/16.

use meridian_config::{Config, Role};
use meridian_sim::wan::WanOptions;
use meridian_sim::world::{PlaceKind, World};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::{TcpStream, UdpSocket};

/// One PoP a long way from its one client location.
const CONFIG: &str = r#"
[deployment]
name = "wan-quic"
zone = "wan-quic.test"
[network]
subnet = "127.102.0.0/16"
[[region]]
name = "r1"
primary = true
location = { lat = 0, lon = 0 }
azs = ["r1a"]
[[edge]]
name = "far"
location = { lat = 0, lon = 60 }
[dns]
servers = 0
[simulation]
wan = true
[[client_location]]
name = "here"
location = { lat = 0, lon = 0 }
[distribution]
http_version = "http2and3"
"#;

#[tokio::test]
async fn quic_datagrams_to_a_pop_are_relayed_in_order_with_the_links_latency() {
    let cfg = Config::parse(CONFIG, "wan-quic.toml").expect("valid config");
    let (pop, _) = cfg.pop_addresses("far").unwrap();
    let public = SocketAddr::new(pop.ip(), cfg.network.https_port);
    let backstage = meridian_config::Placement::BehindRelay.listen(public);
    let admin = cfg
        .nodes()
        .into_iter()
        .find(|n| n.role == Role::Wan)
        .unwrap()
        .admin;
    let opts = WanOptions::new(admin, "t0ken".into());
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    let c = cfg.clone();
    let node = tokio::spawn(async move {
        meridian_sim::wan::run(&c, opts, async {
            let _ = rx.await;
        })
        .await
    });
    for _ in 0..100 {
        assert!(
            !node.is_finished(),
            "the wan node stopped: {:?}",
            node.await
        );
        if TcpStream::connect(admin).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let world = World::new(&cfg);
    let viewer = cfg.client_source("here").unwrap().host(1);
    let rtt = world.rtt(
        world.place_of_ip(viewer).unwrap(),
        world.place(PlaceKind::Pop, "far").unwrap(),
    );
    assert!(
        rtt > Duration::from_millis(20),
        "the model puts the PoP far: {rtt:?}"
    );

    let client = UdpSocket::bind(SocketAddr::new(viewer, 0)).await.unwrap();
    // A datagram while the PoP is not listening (starting, restarting) is lost, and the
    // viewer's later ones still get through once it listens.
    client.send_to(b"too early", public).await.unwrap();
    tokio::time::sleep(rtt * 2).await;
    // The PoP's QUIC socket, as an echo that also says who sent each datagram.
    let echo = UdpSocket::bind(backstage).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let mut answer = buf[..n].to_vec();
            answer.extend_from_slice(format!(" from {}", from.ip()).as_bytes());
            let _ = echo.send_to(&answer, from).await;
        }
    });
    let sent = Instant::now();
    for i in 0..20 {
        client
            .send_to(format!("packet {i:02}").as_bytes(), public)
            .await
            .unwrap();
    }
    let mut buf = [0u8; 2048];
    for i in 0..20 {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .expect("every datagram comes back")
            .unwrap();
        assert_eq!(from, public, "answers come from the public address");
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert_eq!(
            got,
            format!("packet {i:02} from {viewer}"),
            "in order, from the viewer"
        );
        if i == 0 {
            // The link's latency is paid both ways (a lower bound: a busy machine only adds).
            assert!(
                sent.elapsed() >= rtt.mul_f64(0.95),
                "{:?} < {rtt:?}",
                sent.elapsed()
            );
        }
    }
}
