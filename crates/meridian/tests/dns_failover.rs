//! The global DNS of a running deployment: answers by client location, and a frozen
//! region leaves the answers within 3 seconds and comes back when it thaws.

mod common;

use common::ask;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[deployment]
name = "dnstest"
zone = "dnstest.example"

[network]
subnet = "127.44.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a"]

[[region]]
name = "eu-west-1"
location = { lat = 53.35, lon = -6.26 }
azs = ["eu-west-1a"]

[dns]
servers = 1

[[dns.record]]
name = "api"
type = "A"
policy = "latency"
ttl = "5s"
[[dns.record.answer]]
id = "us"
alias = "lb:us-east-1"
[[dns.record.answer]]
id = "eu"
alias = "lb:eu-west-1"

[[client_location]]
name = "new-york"
location = { lat = 40.71, lon = -74.01 }

[[client_location]]
name = "london"
location = { lat = 51.51, lon = -0.13 }
"#;

fn signal(pids: &[i32], sig: i32) {
    for p in pids {
        unsafe {
            libc::kill(*p, sig);
        }
    }
}

#[test]
fn a_frozen_region_leaves_the_answers_within_3s_and_returns() {
    let dir = common::tempdir();
    let cfg = dir.join("dns.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let state_dir = dir.join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["up", "--config"])
        .arg(&cfg)
        .arg("--state-dir")
        .arg(&state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let up_pid = child.id() as i32;
    let guard = scopeguard(up_pid);
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("Press Ctrl-C"));
    assert!(ready, "up did not come up");

    let state = common::state(&state_dir);
    let dns = common::first_node(&state_dir, "dns")["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let locations = state["client_locations"].as_array().unwrap();
    assert_eq!(locations.len(), 2);
    let london_net = locations.iter().find(|l| l["name"] == "london").unwrap()["source"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(london_net, "127.44.201.0/24");
    let london = "127.44.201.1";
    let new_york = "127.44.200.1";
    assert_eq!(
        ask(&dns, new_york, "api.dnstest.example.").as_deref(),
        Some("127.44.1.1")
    );
    assert_eq!(
        ask(&dns, london, "api.dnstest.example.").as_deref(),
        Some("127.44.2.1")
    );

    // Freeze eu-west-1: its balancer and instances stop answering, as in a partition.
    let eu: Vec<i32> = state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["region"] == "eu-west-1")
        .map(|n| n["pid"].as_i64().unwrap() as i32)
        .collect();
    assert_eq!(eu.len(), 2);
    signal(&eu, libc::SIGSTOP);
    let frozen_at = Instant::now();
    let moved = loop {
        if ask(&dns, london, "api.dnstest.example.").as_deref() == Some("127.44.1.1") {
            break frozen_at.elapsed();
        }
        if frozen_at.elapsed() > Duration::from_secs(6) {
            signal(&eu, libc::SIGCONT);
            panic!("London still gets eu-west-1 after 6s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("London moved to us-east-1 {moved:?} after eu-west-1 froze");
    assert!(moved < Duration::from_secs(3), "took {moved:?}");

    signal(&eu, libc::SIGCONT);
    let thawed_at = Instant::now();
    loop {
        if ask(&dns, london, "api.dnstest.example.").as_deref() == Some("127.44.2.1") {
            break;
        }
        assert!(
            thawed_at.elapsed() < Duration::from_secs(8),
            "London did not return to eu-west-1"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guard);
    let _ = child.wait();
}

/// Stops `up` when the test ends, pass or fail.
struct Guard(i32);
fn scopeguard(pid: i32) -> Guard {
    Guard(pid)
}
impl Drop for Guard {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.0, libc::SIGTERM);
        }
    }
}
