//! The edge's admin API leaves an audit trail: who invalidated what, from where, and the
//! attempts refused for want of the token.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

async fn admin_post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::post(path)
        .header("host", "admin")
        .header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let res = sender
        .send_request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

#[tokio::test]
async fn an_invalidation_and_a_refused_attempt_are_audited_without_the_token() {
    let (_o, p, _stop) = one_origin_in(86, 41, "").await;
    let bearer = format!("Bearer {}", p.token);
    let inv = r#"{"paths": ["/static/*", "/app.js"]}"#;
    assert_eq!(
        admin_post(p.admin, "/invalidate", Some(&bearer), inv).await,
        200
    );
    assert_eq!(
        admin_post(p.admin, "/invalidate", Some("Bearer wrong"), inv).await,
        401
    );
    assert_eq!(admin_post(p.admin, "/invalidate", None, inv).await, 401);

    let file = meridian_http::audit::path(&p.state, "edge-pop");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&p.token), "the token never reaches the log");
    let events = meridian_http::audit::read_all(&p.state, None).unwrap();
    assert_eq!(events.len(), 3, "{text}");
    let ok = &events[0];
    assert_eq!(ok.node, "edge-pop");
    assert_eq!(ok.action, "POST /invalidate");
    assert_eq!(ok.target, "/static/*,/app.js");
    assert_eq!(ok.result, 200);
    assert_eq!(
        ok.actor,
        format!("token:{}", meridian_http::audit::token_id(&p.token))
    );
    assert!(ok.source.starts_with("127.0.0.1:") || ok.source.starts_with("127."));
    assert!(ok.time.ends_with('Z') && ok.time.len() == 24, "{}", ok.time);
    assert_eq!(events[1].result, 401);
    assert_ne!(events[1].actor, ok.actor, "a wrong token has another id");
    assert_eq!(
        (events[2].result, events[2].actor.as_str()),
        (401, "anonymous")
    );
    let _ = std::fs::remove_dir_all(&p.state);
}

/// Asked for a key value store it does not have, a PoP with none says it declares none
/// (and where they are declared) rather than listing nothing.
#[tokio::test]
async fn an_unknown_store_is_refused_with_what_the_pop_has() {
    let (_o, p, _stop) = one_origin_in(86, 43, "").await;
    let bearer = format!("Bearer {}", p.token);
    let got = send(
        p.admin,
        "GET",
        "/kvs?store=nosuch&key=k",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(got.status, 404);
    let body = String::from_utf8_lossy(&got.body);
    assert!(
        body.contains("`nosuch`")
            && body.contains("declares none ([[distribution.key_value_store]])"),
        "{body}"
    );
}
