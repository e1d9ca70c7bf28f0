//! The `meridian` command as a user runs it.

mod common;

use common::tempdir;
use std::process::Command;

fn meridian() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian"))
}

#[test]
fn validate_accepts_the_embedded_default() {
    let out = meridian().arg("validate").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for r in ["us-east-1", "eu-west-1", "ap-southeast-1"] {
        assert!(text.contains(r), "{text}");
    }
    assert!(text.contains("primary"));
}

#[test]
fn validate_reports_three_precise_errors_with_exit_2() {
    let dir = tempdir();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[deployment]\nname = \"shop\"\nzone = \"shop.example\"\n\n[[region]]\nname = \"us-east-1\"\n\
         location = { lat = 38.9, lon = -77.4 }\nazs = [\"us-east-1a\"]\n\n[[region]]\nname = \"eu-west-1\"\n\
         location = { lat = 53.3, lon = -6.2 }\nazs = []\n\n[service]\ninstnces_per_az = 2\n\n\
         [load_balancer.health_check]\ninterval = \"5 parsecs\"\n",
    )
    .unwrap();
    let out = meridian().arg("validate").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    let file = path.display().to_string();
    assert!(err.contains(&format!("--> {file}:13:7")), "{err}");
    assert!(err.contains(&format!("--> {file}:16:1")), "{err}");
    assert!(err.contains(&format!("--> {file}:19:12")), "{err}");
    assert!(err.contains("did you mean `instances_per_az`?"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn validate_missing_file_is_a_clear_error() {
    let out = meridian()
        .args(["validate", "/nonexistent/meridian.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("cannot read config file /nonexistent/meridian.toml"),
        "{err}"
    );
    // `--config`, as the other commands take it, is the same file.
    let out = meridian()
        .args(["validate", "--config", "/nonexistent/meridian.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let again = String::from_utf8(out.stderr).unwrap();
    assert_eq!(again, err);
}

#[test]
fn run_names_the_known_nodes_when_given_an_unknown_one() {
    let out = meridian()
        .args(["run", "--node", "lb-mars-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no node named `lb-mars-1`") && err.contains("lb-us-east-1"),
        "{err}"
    );
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["up", "run", "validate", "health", "demo-origin", "version"] {
        let out = meridian().args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub}");
        assert!(
            String::from_utf8(out.stdout).unwrap().contains("Usage"),
            "{sub}"
        );
    }
}

#[test]
fn health_of_nothing_listening_is_unhealthy() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempdir();
    let report = dir.join("report.json");
    let out = meridian()
        .args(["health", "--url", &format!("http://{free}"), "--output"])
        .arg(&report)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["overall"], "unhealthy");
    assert_eq!(v["score"], 0.0);
    assert_eq!(v["components"].as_array().unwrap().len(), 4);
}

#[test]
fn validate_prints_the_data_tier() {
    let out = meridian().arg("validate").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("database: PostgreSQL, writer in us-east-1"),
        "{text}"
    );
    for line in [
        "db-us-east-1a",
        "db-us-east-1b",
        "synchronous standby",
        "db-ap-southeast-1a",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
}

/// A database node whose data directory is not one: a precise message, and the exit
/// status that tells `up` not to restart it in a loop.
#[test]
fn a_database_node_on_a_foreign_directory_stops_with_exit_78() {
    let dir = tempdir();
    let cfg = dir.join("db.toml");
    std::fs::write(
        &cfg,
        "[deployment]\nname = \"d\"\nzone = \"d.example\"\n[network]\nsubnet = \"127.44.0.0/16\"\n\
         [[region]]\nname = \"r1\"\nlocation = { lat = 1, lon = 2 }\nazs = [\"r1a\"]\n\
         [database]\nmulti_az = false\n",
    )
    .unwrap();
    let state = dir.join("state");
    let data = state.join("db").join("db-r1a");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("thesis.txt"), "not a database").unwrap();
    let out = meridian()
        .args(["run", "--config"])
        .arg(&cfg)
        .args(["--node", "db-r1a"])
        .env("MERIDIAN_STATE_DIR", &state)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("is not a PostgreSQL data directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(data.join("thesis.txt")).unwrap(),
        "not a database",
        "nothing of it is touched"
    );
}

/// A state dir whose `up` has stopped (or died) is refused by the commands that call a
/// running deployment's admin endpoints: its token must not go to whatever listens at
/// those addresses now.
#[test]
fn commands_refuse_a_deployment_that_is_not_running() {
    let dir = tempdir();
    let config = dir.join("meridian.toml");
    std::fs::write(&config, meridian_config::DEFAULT_CONFIG).unwrap();
    for (status, pid) in [("stopped", std::process::id()), ("running", u32::MAX - 1)] {
        let state = serde_json::json!({
            "deployment": "shop", "zone": "shop.example", "status": status,
            "config": config, "supervisor_pid": pid,
            "supervisor_admin": "127.0.0.1:9", "updated_at": 0, "nodes": [],
        });
        std::fs::write(dir.join("endpoints.json"), state.to_string()).unwrap();
        for args in [
            &["rollout", "--service-version", "2"][..],
            &["invalidate", "--paths", "/x"],
        ] {
            let out = meridian()
                .args(args)
                .arg("--state-dir")
                .arg(&dir)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} {status}: {err}");
            assert!(err.contains("is not running"), "{args:?} {status}: {err}");
        }
    }
}

/// Output into a pipe its reader closed (`meridian validate | head -1` once head is done)
/// ends the command quietly with SIGPIPE's status, not with a panic.
#[test]
fn a_closed_standard_output_ends_a_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = meridian().arg("validate").stdout(writer).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
