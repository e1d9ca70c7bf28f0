//! `GET /ws/quotes` on its own: frames, symbols, pings, refusals, close 1001 on shutdown.
//! Address 127.56.40.x.

use futures_util::{SinkExt, StreamExt};
use meridian_demo::{DemoOptions, Identity};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn quotes_stream_answer_pings_and_end_with_1001_on_shutdown() {
    let addr: SocketAddr = "127.56.40.2:80".parse().unwrap();
    let opts = DemoOptions {
        identity: Identity {
            region: "us-east-1".into(),
            az: "us-east-1a".into(),
            instance: "svc-1".into(),
        },
        processing_time: Duration::ZERO,
        database: None,
        quote_cache: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meridian_demo::serve(addr, opts, async {
        let _ = stopped.await;
    }));
    let until = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "the demo did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Symbols that are not tickers are refused before the upgrade.
    let bad = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/quotes?symbols=%20,"));
    assert!(bad.await.is_err());

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/quotes"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut frames = 0;
    let mut pong = false;
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    while started.elapsed() < Duration::from_secs(2) {
        match tokio::time::timeout(Duration::from_secs(1), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["instance"], "svc-1");
                assert_eq!(v["region"], "us-east-1");
                assert!(v["price"].as_f64().unwrap() > 0.0);
                assert!(v["time"].as_u64().unwrap() > 0);
                seen.insert(v["symbol"].as_str().unwrap().to_owned());
                frames += 1;
            }
            Ok(Some(Ok(Message::Pong(p)))) => pong = &p[..] == b"p",
            other => panic!("{other:?}"),
        }
    }
    assert!(pong, "the ping was answered");
    // Default symbols, one frame each every 100–250 ms: 8 to 20 rounds in 2 s.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!((3 * 7..=3 * 21).contains(&frames), "{frames}");

    let _ = stop.send(());
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Close(c)))) => break c.map(|c| c.code),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
