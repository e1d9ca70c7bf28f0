//! Where a node listens is its placement's, not the simulation's: a balancer run as on a
//! real host binds its public ports even when the config turns the simulated WAN on, and
//! binds behind them only when told it runs behind the WAN's relays (as `up` tells it).

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[deployment]
name = "placed"
zone = "placed.example"

[network]
subnet = "127.68.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[distribution]
origin_protocol = "http"
access_log = false

[simulation]
wan = true
"#;

/// Whether something accepts connections at `addr` now.
fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Runs `lb-us-east-1` with `extra` arguments until its admin port answers, and reports
/// which of `public` and `public + 10000` (plain and TLS) it listens on.
fn ports_bound(cfg: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> [bool; 4] {
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["run", "--config"])
        .arg(cfg)
        .args(["--node", "lb-us-east-1"])
        .args(extra)
        .env("MERIDIAN_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("meridian run");
    let at = |port: u16| listening(SocketAddr::new([127, 68, 1, 1].into(), port));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Up once its admin port and one plain and one TLS listener (wherever they are) answer.
    let bound = loop {
        let bound = [at(8080), at(18080), at(8443), at(18443)];
        let up = at(9900) && (bound[0] || bound[1]) && (bound[2] || bound[3]);
        if up {
            break bound;
        }
        assert!(
            Instant::now() < deadline,
            "the balancer did not listen in 60 s: {bound:?}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the balancer exited before it listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    bound
}

#[test]
fn a_node_binds_its_public_ports_unless_its_supervisor_puts_it_behind_a_relay() {
    let dir = common::tempdir();
    let cfg = dir.join("placed.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state = common::state_with_token(&dir, "placement-test-token");

    let [plain, plain_behind, tls, tls_behind] = ports_bound(&cfg, &state, &[]);
    assert!(
        plain && tls,
        "on its own (a real host) the balancer binds its public ports 8080 and 8443"
    );
    assert!(
        !plain_behind && !tls_behind,
        "and nothing behind them, although the config runs the simulated WAN"
    );

    let [plain, plain_behind, tls, tls_behind] = ports_bound(&cfg, &state, &["--behind-relay"]);
    assert!(
        plain_behind && tls_behind,
        "behind the relay it binds the ports 10000 above"
    );
    assert!(!plain && !tls, "and leaves the public ports to the relay");
}

#[test]
fn deploy_writes_one_bundle_running_up_for_a_config_without_hosts() {
    let dir = common::tempdir();
    let cfg = dir.join("placed.toml");
    std::fs::write(
        &cfg,
        CONFIG.replace(
            "wan = true",
            "wan = true\n\n[secrets]\nadmin_token = { file = \"keys/admin\" }\nedge_signing_key = { env = \"MERIDIAN_EDGE_KEY\" }",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["deploy", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundles: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(bundles, ["local"]);
    let local = dir.join("out/local");
    let unit = std::fs::read_to_string(local.join("meridian-agent.service")).unwrap();
    assert!(
        unit.contains("/usr/local/bin/meridian up --config /etc/meridian/meridian.toml"),
        "{unit}"
    );
    let script = std::fs::read_to_string(local.join("install.sh")).unwrap();
    assert!(
        script.contains("install -m 0600 \"$here/keys/admin\" /etc/meridian/keys/admin"),
        "a secret named relative to the config is installed beside it: {script}"
    );
    let token = std::fs::read_to_string(local.join("keys/admin")).unwrap();
    assert_eq!(token.trim().len(), 32, "16 random bytes in hex: {token:?}");
    // Again: the same secrets, not new ones.
    let again = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["deploy", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(local.join("keys/admin")).unwrap(),
        token
    );
    // A secret named by variable: in the unit's environment file, owner-only, made once.
    let env_file = local.join("meridian.env");
    let env = std::fs::read_to_string(&env_file).unwrap();
    let key = env
        .strip_prefix("MERIDIAN_EDGE_KEY=")
        .map(str::trim)
        .unwrap_or_else(|| panic!("{env}"));
    assert_eq!(key.len(), 32, "{env}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let unit = std::fs::read_to_string(local.join("meridian-agent.service")).unwrap();
    assert!(
        unit.contains("EnvironmentFile=/etc/meridian/meridian.env"),
        "{unit}"
    );
    let script = std::fs::read_to_string(local.join("install.sh")).unwrap();
    assert!(
        script.contains("install -m 0600 \"$here/meridian.env\" /etc/meridian/meridian.env"),
        "{script}"
    );
    assert_ne!(key, token.trim(), "each secret its own value");
}
