//! Secrets through `meridian up`: a signing key from a file the config names, `meridian
//! secrets rotate` of the admin token (the old one works during the grace only, the new one
//! at once, no restart) and of the signing key (traffic keeps flowing), and `secrets list`
//! never printing a value; the deployment CA and the balancers' certificates rotated while
//! requests flow through the PoP.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{get, start_up, state};

fn config(key_file: &std::path::Path) -> String {
    format!(
        r#"
[deployment]
name = "secrets-e2e"
zone = "secrets.example"

[network]
subnet = "127.87.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = {{ lat = 38.95, lon = -77.45 }}
azs = ["us-east-1a"]

[service]
runtime = "demo"
instances_per_az = 1

[load_balancer]
deregistration_delay = "300ms"
require_edge_signature = true

[supervisor]
stop_timeout = "5s"

[secrets]
edge_signing_key = {{ file = "{}" }}

[[edge]]
name = "london"
location = {{ lat = 51.51, lon = -0.13 }}

[distribution]
[[distribution.origin_group]]
name = "regions"
members = ["lb:us-east-1"]

[distribution.default_behavior]
origin_group = "regions"

[dns]
servers = 0
"#,
        key_file.display()
    )
}

fn meridian(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "meridian {args:?}: {text}");
    text
}

async fn admin_get(admin: &str, path: &str, token: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_without_a_restart_and_are_never_listed() {
    let dir = common::tempdir();
    let key_file = dir.join("edge-key");
    meridian_http::tls::write_secret(&key_file, b"key-from-a-mounted-file\n").unwrap();
    let cfg = dir.join("secrets.toml");
    std::fs::write(&cfg, config(&key_file)).unwrap();
    let state_dir = dir.join("state");
    let sd = state_dir.to_str().unwrap();
    let (mut up, _) = start_up(&cfg, &state_dir).await;
    let st = state(&state_dir);
    let nodes = st["nodes"].as_array().unwrap().clone();
    let edge = nodes.iter().find(|n| n["role"] == "edge").unwrap();
    let pop = edge["address"].as_str().unwrap().to_owned();
    let admin = edge["admin"].as_str().unwrap().to_owned();
    let client = meridian_http::upstream_client(Duration::from_secs(2), Duration::from_secs(30));

    // Signed with the key from the configured file: the balancer lets it through.
    let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/AAPL?n=1"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));

    let token_file = state_dir.join("admin-token");
    let old = read(&token_file);
    assert_eq!(admin_get(&admin, "/origins", &old).await, 200);
    assert_eq!(admin_get(&admin, "/origins", "wrong").await, 401);

    let rotated = Instant::now();
    let said = meridian(&[
        "secrets",
        "rotate",
        "admin-token",
        "--state-dir",
        sd,
        "--grace",
        "5s",
    ]);
    let new = read(&token_file);
    assert_ne!(new, old);
    assert!(!said.contains(&new) && !said.contains(&old), "{said}");
    // Nodes re-read within 2 s; no restart.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(admin_get(&admin, "/origins", &new).await, 200, "new token");
    assert_eq!(
        admin_get(&admin, "/origins", &old).await,
        200,
        "old token in grace"
    );

    // The signing key, rotated through the file the running deployment's config names.
    let old_key = read(&key_file);
    meridian(&[
        "secrets",
        "rotate",
        "edge-signing-key",
        "--state-dir",
        sd,
        "--grace",
        "1m",
    ]);
    let new_key = read(&key_file);
    assert_ne!(new_key, old_key);
    let listed = meridian(&["secrets", "list", "--state-dir", sd]);
    for secret in [&old, &new, &old_key, &new_key] {
        assert!(
            !listed.contains(secret.as_str()),
            "a value was listed:\n{listed}"
        );
    }
    assert!(listed.contains(key_file.to_str().unwrap()), "{listed}");
    assert!(listed.contains("in grace"), "{listed}");
    // Key material `rotate` does not replace is listed too: the disk tier's sealing key.
    let sealing = listed.lines().find(|l| l.starts_with("disk-cache-key"));
    assert!(
        sealing.is_some_and(|l| l.contains("disk-cache-key") && l.ends_with("not rotated by `rotate`")),
        "{listed}"
    );
    let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/AAPL?n=2"))
        .await
        .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/AAPL?n=3"))
        .await
        .unwrap();
    assert_eq!(
        s,
        200,
        "signed with the new key: {}",
        String::from_utf8_lossy(&body)
    );

    // The deployment CA, then every balancer's certificate: requests through the PoP
    // (TLS to the balancer, verified against the CA) keep working throughout.
    let lb_cert = state_dir.join("tls").join("lb-us-east-1-cert.pem");
    let before = read(&lb_cert);
    let sd_owned = sd.to_owned();
    let rotating = tokio::task::spawn_blocking(move || {
        meridian(&[
            "secrets",
            "rotate",
            "deployment-ca",
            "--state-dir",
            &sd_owned,
            "--grace",
            "1m",
        ])
    });
    let mut n = 10;
    while !rotating.is_finished() {
        let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/AAPL?n={n}"))
            .await
            .unwrap();
        assert_eq!(
            s,
            200,
            "during the CA rotation: {}",
            String::from_utf8_lossy(&body)
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said = rotating.await.unwrap();
    assert!(said.contains("lb-us-east-1"), "{said}");
    assert_ne!(read(&lb_cert), before, "the balancer got a new certificate");
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for n in 0..5 {
        let (s, _, body) = get(&client, &format!("http://{pop}/api/quotes/MSFT?n={n}"))
            .await
            .unwrap();
        assert_eq!(
            s,
            200,
            "after the CA rotation: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let listed = meridian(&["secrets", "list", "--state-dir", sd]);
    assert!(
        listed.contains("deployment-ca") && listed.contains("lb-us-east-1 cert"),
        "{listed}"
    );

    // After the admin token's grace: the old one is refused, the new one still works.
    tokio::time::sleep(Duration::from_millis(5300).saturating_sub(rotated.elapsed())).await;
    assert_eq!(
        admin_get(&admin, "/origins", &old).await,
        401,
        "old token after grace"
    );
    assert_eq!(admin_get(&admin, "/origins", &new).await, 200);
    up.stop();
}
