//! `meridian up` with a `[database]`: real PostgreSQL, a Multi-AZ synchronous standby and a
//! replica in another region that streams through the WAN, and nothing left behind.

use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

mod common;
use common::{start_up, state};

/// Two regions on their own subnet, with the WAN: every database listens behind it.
const CONFIG: &str = r#"
[deployment]
name = "data"
zone = "data.example"

[network]
subnet = "127.43.0.0/16"

[[region]]
name = "us-east-1"
primary = true
location = { lat = 38.95, lon = -77.45 }
azs = ["us-east-1a", "us-east-1b"]

[[region]]
name = "ap-southeast-1"
location = { lat = 1.35, lon = 103.82 }
azs = ["ap-southeast-1a"]

[service]
instances_per_az = 1

[database]
home_region = "us-east-1"

[simulation]
wan = true

[console]
enabled = false

[dns]
servers = 0
"#;

async fn connect(addr: &str, password: &str) -> tokio_postgres::Client {
    let (host, port) = addr.split_once(':').unwrap();
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(host)
        .port(port.parse().unwrap())
        .user("postgres")
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = cfg.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_multi_az_primary_and_a_cross_region_replica_through_the_wan() {
    let dir = common::tempdir();
    let cfg = dir.join("data.toml");
    // The database password from a mounted secret file the config names, as on real
    // hosts: nothing in the state dir.
    let secret = dir.join("db-secret");
    meridian_http::tls::write_secret(&secret, b"mounted-db-password-42\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{CONFIG}\n[secrets]\ndb_password = {{ file = \"{}\" }}\n",
            secret.display()
        ),
    )
    .unwrap();
    let state_dir = dir.join("state");
    let (mut up, printed) = start_up(&cfg, &state_dir).await;
    for (node, addr) in [
        ("db-us-east-1a", "postgres://127.43.1.60:5432"),
        ("db-us-east-1b", "postgres://127.43.1.61:5432"),
        ("db-ap-southeast-1a", "postgres://127.43.2.60:5432"),
    ] {
        assert!(
            printed.contains(node) && printed.contains(addr),
            "{node} at {addr}:\n{printed}"
        );
    }
    assert!(
        !state_dir.join("db-password").exists(),
        "no password is made in the state dir when the config names a file"
    );
    let password = "mounted-db-password-42";

    // PostgreSQL listens behind the WAN (port + 10000); the public port is the relay's, so
    // every connection below, and the replica's stream, crosses the WAN.
    let primary = connect("127.43.1.60:5432", password).await;
    primary
        .batch_execute("CREATE TABLE tier_check (id int PRIMARY KEY, symbol text)")
        .await
        .unwrap();
    primary
        .execute("INSERT INTO tier_check VALUES (1, 'AAPL')", &[])
        .await
        .unwrap();
    let rows = primary
        .query(
            "SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let states: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        states,
        [
            ("db-ap-southeast-1a".to_owned(), "async".to_owned()),
            ("db-us-east-1b".to_owned(), "sync".to_owned()),
        ]
    );

    // The committed row is on the synchronous standby at once, and on the replica soon.
    let standby = connect("127.43.1.61:5432", password).await;
    let n: i64 = standby
        .query_one("SELECT count(*) FROM tier_check", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 1,
        "a synchronous commit is on the standby when it returns"
    );
    let replica = connect("127.43.2.60:5432", password).await;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = replica
            .query_opt("SELECT symbol FROM tier_check WHERE id = 1", &[])
            .await;
        if let Ok(Some(row)) = seen {
            assert_eq!(row.get::<_, String>(0), "AAPL");
            break;
        }
        assert!(Instant::now() < until, "the replica never saw the row");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = replica
        .execute("INSERT INTO tier_check VALUES (2, 'MSFT')", &[])
        .await
        .expect_err("a replica takes no write");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );
    let db_nodes: Vec<serde_json::Value> = state(&state_dir)["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "db")
        .cloned()
        .collect();
    assert_eq!(db_nodes.len(), 3);

    // A promotion by hand is refused while the primary leads.
    let promote = std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
        .args(["db", "promote", "db-ap-southeast-1a", "--state-dir"])
        .arg(&state_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&promote.stdout);
    assert!(!promote.status.success(), "{said}");
    assert!(
        said.contains("409") && said.contains("db-us-east-1a leads"),
        "{said}"
    );

    // Stopping the deployment stops every PostgreSQL it started.
    let status = up.stop().expect("up was running");
    assert!(status.success(), "{status:?}");
    let data = state_dir.join("db").display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&data))
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
