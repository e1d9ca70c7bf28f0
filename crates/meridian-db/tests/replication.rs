//! Real PostgreSQL on loopback: a primary, a synchronous standby and an asynchronous
//! replica run by `meridian_db::run`, checked through SQL, the keeper's admin endpoints
//! and /proc. Every wait is bounded.

use meridian_db::{binaries, run, DbError, DbRole, Status};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_sync_standby_and_replica_replicate() {
    meridian_telemetry::init_logs("info");
    let base = base_dir("repl");
    let tag = std::process::id();
    let (p_name, s_name, r_name) = (
        format!("db-it{tag}-primary"),
        format!("db-it{tag}-standby"),
        format!("db-it{tag}-replica"),
    );
    let mut p = options(&p_name, DbRole::Primary, "127.78.1.1", &base);
    p.sync_standbys = vec![s_name.clone()];
    p.replicas = vec![s_name.clone(), r_name.clone()];
    let mut s = options(&s_name, DbRole::SyncStandby, "127.78.1.2", &base);
    s.upstream = Some(p.listen);
    let mut r = options(&r_name, DbRole::Replica, "127.78.1.3", &base);
    r.upstream = Some(p.listen);
    // The replica's connections leave from its own address, through the keeper's relay.
    r.source = Some("127.78.1.3".parse().unwrap());
    let (p_listen, s_listen, r_listen) = (p.listen, s.listen, r.listen);
    let (p_admin, s_admin, r_admin) = (p.admin, s.admin, r.admin);
    let needles = vec![
        base.display().to_string(),
        p_name.clone(),
        s_name.clone(),
        r_name.clone(),
    ];
    let r_opts = r.clone();
    let r_opts_dir = r.data_dir.clone();

    // All three at once: the standbys wait for the primary and its slots by themselves.
    let nodes = vec![start(p), start(s), start(r)];

    for (node, admin) in nodes.iter().zip([p_admin, s_admin, r_admin]) {
        wait_healthy(node, admin, Duration::from_secs(45)).await;
    }

    // Data directories belong to the postgres user and are private.
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(base.join(&p_name).join("data")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        if unsafe { libc::geteuid() } == 0 {
            assert_ne!(meta.uid(), 0, "the data directory must not belong to root");
        }
        let mut leftovers: Vec<_> = std::fs::read_dir(base.join(&p_name))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        leftovers.sort();
        assert_eq!(
            leftovers,
            vec!["data".to_string(), "data.lease.json".to_string()],
            "the password file and staging dirs are gone; the witness keeps its grants"
        );
    }

    // A synchronous write on the primary is seen on the standby and the replica.
    let primary = sql(p_listen).await.unwrap();
    primary
        .batch_execute("CREATE TABLE quotes (symbol text PRIMARY KEY, price numeric); INSERT INTO quotes VALUES ('AAPL', 189.5);")
        .await
        .unwrap();
    for (listen, who) in [(s_listen, "standby"), (r_listen, "replica")] {
        wait_for(
            &format!("the row on the {who}"),
            Duration::from_secs(15),
            || async move {
                let c = sql(listen).await?;
                let rows = c
                    .query("SELECT symbol FROM quotes", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                match rows.first().map(|r| r.get::<_, String>(0)) {
                    Some(s) if s == "AAPL" => Ok(()),
                    other => Err(format!("got {other:?}")),
                }
            },
        )
        .await;
    }

    // The primary sees the standby as synchronous and the replica as asynchronous.
    let (s_sync, r_sync) = (s_name.clone(), r_name.clone());
    wait_for(
        "pg_stat_replication states",
        Duration::from_secs(15),
        || {
            let primary = &primary;
            let (s_sync, r_sync) = (&s_sync, &r_sync);
            async move {
                let rows = primary
                    .query(
                        "SELECT application_name, sync_state FROM pg_stat_replication",
                        &[],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let states: Vec<(String, String)> =
                    rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                let has = |n: &str, st: &str| states.iter().any(|(a, b)| a == n && b == st);
                if has(s_sync, "sync") && has(r_sync, "async") {
                    Ok(())
                } else {
                    Err(format!("{states:?}"))
                }
            }
        },
    )
    .await;
    // Where each stream comes from, as the primary sees it: the replica from its own
    // address (relayed by its keeper), the standby from wherever the system chose.
    let rows = primary
        .query(
            "SELECT application_name, host(client_addr) FROM pg_stat_replication",
            &[],
        )
        .await
        .unwrap();
    let from: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(
        from.iter().any(|(n, a)| n == &r_sync && a == "127.78.1.3"),
        "{from:?}"
    );

    // A standby refuses writes.
    let standby = sql(s_listen).await.unwrap();
    let err = standby
        .execute("INSERT INTO quotes VALUES ('MSFT', 410)", &[])
        .await
        .expect_err("a write on the standby must fail");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err}"
    );

    // /status: roles, recovery and the primary's view of its standbys.
    let status = |admin| async move {
        let (code, body) = get(admin, "/status").await.unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Status>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let ps = status(p_admin).await;
    assert_eq!((ps.role, ps.in_recovery), (DbRole::Primary, false));
    assert_eq!(ps.name, p_name);
    assert!(ps.lsn.is_some());
    let sync_of = |n: &str| {
        ps.standbys
            .iter()
            .find(|s| s.name == n)
            .map(|s| s.sync_state.clone())
    };
    assert_eq!(sync_of(&s_name).as_deref(), Some("sync"), "{ps:?}");
    assert_eq!(sync_of(&r_name).as_deref(), Some("async"), "{ps:?}");
    let ss = status(s_admin).await;
    assert_eq!((ss.role, ss.in_recovery), (DbRole::SyncStandby, true));
    let rs = status(r_admin).await;
    assert_eq!((rs.role, rs.in_recovery), (DbRole::Replica, true));
    assert!(rs.lag_bytes >= 0 && rs.lag_seconds >= 0.0, "{rs:?}");

    // /metrics: the lag series on a replica, the standbys on the primary.
    let (code, text) = get(r_admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    for series in [
        "meridian_db_up 1",
        "meridian_db_in_recovery 1",
        "meridian_db_replication_lag_bytes ",
        "meridian_db_replication_lag_seconds ",
        "meridian_db_commits_total ",
    ] {
        assert!(
            text.contains(series),
            "replica /metrics lacks {series:?}:\n{text}"
        );
    }
    let (code, text) = get(p_admin, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert!(text.contains("meridian_db_in_recovery 0"), "{text}");
    let standby_series = format!("meridian_db_standbys{{name=\"{s_name}\",sync_state=\"sync\"}} 1");
    assert!(
        text.contains(&standby_series),
        "primary /metrics lacks {standby_series}:\n{text}"
    );

    // A replica restarted on its existing data directory just starts and still has the row.
    let mut nodes = nodes;
    let replica = nodes.pop().unwrap();
    stop(replica).await;
    let replica = start(r_opts);
    wait_healthy(&replica, r_admin, Duration::from_secs(30)).await;
    let c = sql(r_listen).await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM quotes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    drop(c);

    // PostgreSQL dying under the keeper ends `run` with an error (the supervisor restarts
    // the node) instead of leaving a keeper that serves nothing.
    let pidfile = std::fs::read_to_string(r_opts_dir.join("postmaster.pid")).unwrap();
    let pid: i32 = pidfile.lines().next().unwrap().trim().parse().unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let ended = tokio::time::timeout(Duration::from_secs(10), replica.task)
        .await
        .expect("run must return when postgres dies")
        .expect("the node task panicked");
    match ended {
        Err(DbError::Exited { status, .. }) => assert!(status.contains("signal 9"), "{status}"),
        other => panic!("expected DbError::Exited, got {other:?}"),
    }

    // Shutdown stops every postgres process of these nodes.
    drop(primary);
    drop(standby);
    for node in nodes.into_iter().rev() {
        stop(node).await;
    }
    wait_for("no postgres processes left", Duration::from_secs(5), || {
        let needles = &needles;
        async move {
            let left = processes_mentioning(needles);
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join("; "))
            }
        }
    })
    .await;
    assert!(
        get(p_admin, "/health").await.is_err(),
        "the admin server stops with the node"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn finds_the_installed_postgresql() {
    let bins = binaries()
        .expect("PostgreSQL must be installed for these tests (apt-get install postgresql)");
    let postgres = bins.bindir.join("postgres");
    assert!(postgres.is_file(), "{}", postgres.display());
    let out = std::process::Command::new(&postgres)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("(PostgreSQL) {}.", bins.version)),
        "binaries() says {} but the server says {text}",
        bins.version
    );
    // pg_config, when there, is what decides.
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        if out.status.success() {
            assert_eq!(
                bins.bindir,
                PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
            );
        }
    }
    assert!(
        bins.version >= 15,
        "this machine has PostgreSQL 15 or newer: {bins:?}"
    );
}

#[tokio::test]
async fn refuses_a_directory_that_is_not_a_data_directory_and_leaves_it_alone() {
    let base = base_dir("junk");
    let mut opts = options("db-junk", DbRole::Primary, "127.78.2.1", &base);
    std::fs::create_dir_all(&opts.data_dir).unwrap();
    std::fs::write(opts.data_dir.join("notes.txt"), b"my precious notes").unwrap();
    let err = run(opts.clone(), std::future::pending()).await.unwrap_err();
    assert!(
        matches!(&err, DbError::NotADataDir { path } if *path == opts.data_dir),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&opts.data_dir.display().to_string()) && msg.contains("no PG_VERSION"),
        "{msg}"
    );
    let entries: Vec<_> = std::fs::read_dir(&opts.data_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("notes.txt")]);
    assert_eq!(
        std::fs::read(opts.data_dir.join("notes.txt")).unwrap(),
        b"my precious notes"
    );
    let siblings: Vec<_> = std::fs::read_dir(base.join("db-junk"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        siblings,
        vec![std::ffi::OsString::from("data")],
        "nothing made beside it"
    );

    // A data directory with PG_VERSION but without its control file is damaged.
    opts.name = "db-damaged".into();
    opts.data_dir = base.join("db-damaged").join("data");
    std::fs::create_dir_all(&opts.data_dir).unwrap();
    let installed = binaries().unwrap().version;
    std::fs::write(opts.data_dir.join("PG_VERSION"), format!("{installed}\n")).unwrap();
    let err = run(opts.clone(), std::future::pending()).await.unwrap_err();
    match &err {
        DbError::Damaged { path, reason } => {
            assert_eq!(*path, opts.data_dir);
            assert!(reason.contains("global/pg_control"), "{reason}");
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert!(err
        .to_string()
        .contains(&opts.data_dir.display().to_string()));
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_waiting_for_its_upstream_says_so_and_stops_promptly() {
    let base = base_dir("wait");
    let mut opts = options("db-waiting", DbRole::Replica, "127.78.3.1", &base);
    // Nothing listens there.
    opts.upstream = Some(addr("127.78.3.9:5432"));
    let admin = opts.admin;
    let node = start(opts.clone());
    let body = wait_for(
        "a 503 naming the phase",
        Duration::from_secs(10),
        || async move {
            match get(admin, "/health").await? {
                (503, body) if body.contains("waiting for the upstream 127.78.3.9:5432") => {
                    Ok(body)
                }
                (code, body) => Err(format!("{code} {body}")),
            }
        },
    )
    .await;
    assert!(body.contains("unhealthy"), "{body}");
    let started = Instant::now();
    stop(node).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(
        !opts.data_dir.exists(),
        "no data directory is made before the copy succeeds"
    );
    let _ = std::fs::remove_dir_all(&base);
}
