//! A deployment on real network hosts: Linux network namespaces, one per host, joined by
//! veth pairs to a bridge in a namespace of their own, each host with its own address in
//! 10.77.0.0/24 (which exists only inside these namespaces). A `meridian agent` runs in
//! each host namespace with the same config; a viewer in a fifth namespace asks the DNS on
//! the front host for the API's address, then gets its answers through the PoP (front),
//! the balancer (its own host) and an instance on one of two app hosts. Losing an app
//! host (every process in it killed) loses no request.
//!
//! Needs root and iproute2; where namespaces cannot be made the test says so and passes
//! without checking anything else.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespaces of one run, removed (with everything in them) when dropped.
struct Lab {
    prefix: String,
    names: Vec<String>,
    agents: Vec<Child>,
}

impl Lab {
    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Makes the switch and one namespace per host, `eth0` at `10.77.0.<last>`.
    fn build(hosts: &[(&str, u8)]) -> Result<Lab, String> {
        let mut lab = Lab {
            prefix: format!("mh{}", std::process::id()),
            names: Vec::new(),
            agents: Vec::new(),
        };
        let sw = lab.ns("sw");
        ip(&["netns", "add", &sw])?;
        lab.names.push(sw.clone());
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for (i, (host, last)) in hosts.iter().enumerate() {
            let ns = lab.ns(host);
            ip(&["netns", "add", &ns])?;
            lab.names.push(ns.clone());
            let port = format!("v{i}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{last}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// Starts `meridian agent --host <host>` inside the host's namespace.
    /// The agent's state dir is the bundle's `state`, as where the bundle is unpacked.
    fn agent(&mut self, host: &str, cfg: &std::path::Path, dir: &std::path::Path) {
        let state = cfg.parent().unwrap().join("state");
        let log = std::fs::File::create(dir.join(format!("agent-{host}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .arg(env!("CARGO_BIN_EXE_meridian"))
            .args(["agent", "--host", host, "--config"])
            .arg(cfg)
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("ip netns exec meridian agent");
        self.agents.push(child);
    }

    /// Kills every process in a host's namespace at once: a lost machine.
    fn lose(&self, host: &str) {
        for pid in pids(&self.ns(host)) {
            // SAFETY: kill(2) on a pid listed in a namespace this test made.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.agents {
            // SAFETY: kill(2) on a child this test started; SIGTERM lets the agent stop its nodes.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        for c in &mut self.agents {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.names.iter().rev() {
            for pid in pids(ns) {
                // SAFETY: as in `lose`.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `f` on a thread that has entered namespace `ns`: its sockets are that host's.
fn inside<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace's file");
        // SAFETY: setns(2) on this thread only, with a namespace fd we hold open.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the viewer thread")
}

/// One HTTP/1.1 GET; the status and the instance that answered.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: api.hosts.example\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:.80}"))?;
    let instance = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-meridian-instance: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Ok((status, instance))
}

/// The whole text `GET path` answers at `addr` (an admin endpoint).
fn text(addr: SocketAddr, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// The A records the DNS at `server` gives for `name`.
fn resolve(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    use std::str::FromStr;
    let mut q = Message::query();
    q.add_query(Query::query(
        Name::from_str(name).map_err(|e| e.to_string())?,
        RecordType::A,
    ));
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&q.to_vec().map_err(|e| e.to_string())?, server)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).map_err(|e| e.to_string())?;
    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
    Ok(answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect())
}

fn config() -> String {
    r#"[deployment]
name = "hosts"
zone = "hosts.example"

[network]
subnet = "127.71.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.9, lon = -77.4 }
azs = ["us-east-1a", "us-east-1b"]

[service]
instances_per_az = 1

[load_balancer.health_check]
interval = "1s"
timeout = "900ms"
healthy_threshold = 1
unhealthy_threshold = 2

[[edge]]
name = "ashburn"
location = { lat = 39.0, lon = -77.5 }
memory_cache = "16MiB"
disk_cache = "0B"

[distribution]
origin_protocol = "https"
access_log = false

[[distribution.cache_policy]]
name = "disabled"
min_ttl = "0s"
default_ttl = "0s"
max_ttl = "0s"

[[distribution.behavior]]
path_pattern = "/api/*"
origin_group = "default"
cache_policy = "disabled"

[dns]
servers = 1

[[dns.record]]
name = "api"
type = "A"
ttl = "5s"
alias = "pop:ashburn"

[console]
enabled = false

[secrets]
admin_token = { file = "secrets/admin-token" }
edge_signing_key = { file = "secrets/edge-signing-key" }

[[host]]
name = "front"
address = "10.77.0.2"
nodes = ["edge-ashburn", "dns-1"]

[[host]]
name = "balancer"
address = "10.77.0.3"
roles = ["lb"]

[[host]]
name = "app-a"
address = "10.77.0.4"
az = "us-east-1a"
roles = ["service"]

[[host]]
name = "app-b"
address = "10.77.0.5"
az = "us-east-1b"
roles = ["service"]
"#
    .to_owned()
}

#[test]
fn a_viewer_reaches_an_instance_across_four_hosts_and_losing_one_loses_no_request() {
    let hosts = [
        ("viewer", 10),
        ("front", 2),
        ("balancer", 3),
        ("app-a", 4),
        ("app-b", 5),
    ];
    let mut lab = match Lab::build(&hosts) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "SKIPPED: network namespaces cannot be made here (needs root and iproute2): {e}"
            );
            return;
        }
    };
    let dir = common::tempdir();
    let cfg = dir.join("hosts.toml");
    std::fs::write(&cfg, config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["validate"])
        .arg(&cfg)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("placement (4 hosts)") && summary.contains("lb-us-east-1 10.77.0.3:8080"),
        "{summary}"
    );

    // A bundle per host, and each host starts from its bundle and the binary alone.
    let out = Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["deploy", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir.join("bundles"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = |host: &str| dir.join("bundles").join(host);
    let token = std::fs::read_to_string(bundle("front").join("secrets/admin-token")).unwrap();
    for host in ["front", "balancer", "app-a", "app-b"] {
        let b = bundle(host);
        let unit = std::fs::read_to_string(b.join("meridian-agent.service")).unwrap();
        assert!(
            unit.contains(&format!("agent --host {host} --config")),
            "{unit}"
        );
        let secret = b.join("secrets/admin-token");
        assert_eq!(
            std::fs::read_to_string(&secret).unwrap(),
            token,
            "one token for all hosts"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", secret.display());
        assert!(b.join("install.sh").exists());
        // A host carries only its nodes' secrets: the signing key where edge requests
        // are signed (the PoP) or checked (the balancer).
        assert_eq!(
            b.join("secrets/edge-signing-key").exists(),
            matches!(host, "front" | "balancer"),
            "{host}"
        );
        // TLS from the PoP to the balancer: one deployment CA for all hosts, and the
        // balancer's key only on the balancer's host; the CA's key in no bundle.
        let tls = b.join("state/tls");
        assert!(tls.join("ca-cert.pem").exists(), "{}", tls.display());
        assert!(!tls.join("ca-key.pem").exists());
        assert_eq!(
            tls.join("lb-us-east-1-key.pem").exists(),
            host == "balancer",
            "{host}"
        );
    }
    assert_eq!(
        std::fs::read(bundle("front").join("state/tls/ca-cert.pem")).unwrap(),
        std::fs::read(bundle("balancer").join("state/tls/ca-cert.pem")).unwrap(),
        "one CA"
    );
    // Instances first, so the balancer finds healthy targets when it starts.
    for host in ["app-a", "app-b", "balancer", "front"] {
        let config = bundle(host).join("meridian.toml");
        lab.agent(host, &config, &dir);
    }
    let viewer = lab.ns("viewer");
    let dns: SocketAddr = "10.77.0.2:8053".parse().unwrap();
    let pop: SocketAddr = "10.77.0.2:8080".parse().unwrap();

    // Up when the viewer gets an instance's answer through the PoP.
    let deadline = Instant::now() + Duration::from_secs(90);
    let first = loop {
        let got = inside(&viewer, move || get(pop, "/api/quotes/AAPL?first"));
        if let Ok((200, instance)) = &got {
            break instance.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the PoP in 90 s: {got:?}; logs in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(first.starts_with("svc-us-east-1"), "{first}");
    // The DNS starts after the PoP: give it the time its start takes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = inside(&viewer, move || resolve(dns, "api.hosts.example."));
        if answer.is_ok() || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        answer,
        Ok(vec!["10.77.0.2".to_owned()]),
        "the DNS answers with the PoP's host"
    );

    // Both app hosts serve, once the balancer has seen both healthy.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0u32;
    while seen.len() < 2 && Instant::now() < deadline {
        let (status, instance) = inside(&viewer, move || {
            get(pop, &format!("/api/quotes/AAPL?spread={i}"))
        })
        .expect("an answer");
        assert_eq!(status, 200);
        seen.insert(instance);
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["svc-us-east-1a-1", "svc-us-east-1b-1"],
        "the balancer spreads over both app hosts"
    );

    // The PoP reached the balancer over TLS, verified by the one deployment CA.
    let lb_admin: SocketAddr = "10.77.0.3:9900".parse().unwrap();
    let metrics =
        inside(&viewer, move || text(lb_admin, "/metrics")).expect("the balancer's metrics");
    let tls_requests: f64 = metrics
        .lines()
        .find(|l| l.starts_with("meridian_lb_tls_requests_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        tls_requests > 0.0,
        "no request reached the balancer over TLS"
    );

    // A config change reaches every host's agent: the DNS on the front host takes a new
    // record set in place, the balancer host restarts its balancer (a new threshold it
    // would reload, but turning its access log on needs a restart), nothing else restarts.
    let changed = bundle("front").join("changed.toml");
    std::fs::write(
        &changed,
        config()
            .replace("unhealthy_threshold = 2", "unhealthy_threshold = 3")
            .replace(
                "[load_balancer.health_check]",
                "[load_balancer]\naccess_log = true\n\n[load_balancer.health_check]",
            )
            + "\n[[dns.record]]\nname = \"www\"\ntype = \"A\"\nttl = \"5s\"\nvalues = [\"192.0.2.7\"]\n",
    )
    .unwrap();
    let (front_before, app_before) = (pids(&lab.ns("front")), pids(&lab.ns("app-b")));
    let apply = |file: &std::path::Path| {
        Command::new("ip")
            .args(["netns", "exec", &viewer])
            .arg(env!("CARGO_BIN_EXE_meridian"))
            .args(["apply", "--agents", "--yes", "--config"])
            .arg(file)
            .output()
            .unwrap()
    };
    let out = apply(&changed);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("+ dns-1: dns record set www"), "{said}");
    assert!(
        said.contains("host balancer:")
            && said.contains("lb-us-east-1")
            && said.contains("restarted in"),
        "{said}"
    );
    assert!(said.contains("1 node(s) reloaded, 1 restarted"), "{said}");
    let www = inside(&viewer, move || resolve(dns, "www.hosts.example."));
    assert_eq!(
        www,
        Ok(vec!["192.0.2.7".to_owned()]),
        "the new record set is served"
    );
    assert_eq!(
        pids(&lab.ns("front")),
        front_before,
        "the front host restarted nothing"
    );
    assert_eq!(
        pids(&lab.ns("app-b")),
        app_before,
        "the app hosts restarted nothing"
    );
    let events = std::fs::read_to_string(bundle("front").join("state/events.log")).unwrap();
    assert!(events.contains("apply: config"), "{events}");
    // A config that does not validate changes nothing, on any host.
    let broken = bundle("front").join("broken.toml");
    std::fs::write(&broken, config().replace("default_ttl", "default_tl")).unwrap();
    let out = apply(&broken);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = apply(&changed);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No changes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The restarted balancer serves again before the next step counts failures.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(
        inside(&viewer, move || get(pop, "/api/quotes/AAPL?settled")),
        Ok((200, _))
    ) {
        assert!(Instant::now() < deadline, "no answer after the apply");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Lose app-a while the viewer keeps asking: no request fails.
    let lost = lab.ns("app-a");
    let worker = std::thread::spawn({
        let viewer = viewer.clone();
        move || {
            inside(&viewer, move || {
                let mut results = Vec::new();
                let until = Instant::now() + Duration::from_secs(8);
                let mut i = 0u32;
                while Instant::now() < until && i < 400 {
                    results.push(get(pop, &format!("/api/quotes/AAPL?during={i}")));
                    i += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                results
            })
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    lab.lose("app-a");
    assert!(
        pids(&lost).is_empty() || {
            std::thread::sleep(Duration::from_millis(200));
            pids(&lost).is_empty()
        },
        "every process of the lost host is gone"
    );
    let results = worker.join().unwrap();
    let failed: Vec<_> = results
        .iter()
        .filter(|r| !matches!(r, Ok((200, _))))
        .collect();
    eprintln!(
        "requests while app-a was lost: {}, failed: {}",
        results.len(),
        failed.len()
    );
    assert!(
        results.len() > 50,
        "only {} requests were sent",
        results.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
    let after: Vec<&str> = results
        .iter()
        .rev()
        .take(20)
        .filter_map(|r| r.as_ref().ok().map(|(_, i)| i.as_str()))
        .collect();
    assert!(
        after.iter().all(|i| *i == "svc-us-east-1b-1"),
        "after the loss only app-b answers: {after:?}"
    );
}
