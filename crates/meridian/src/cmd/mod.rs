//! The subcommands, one file each; this file lists them, sends each to its file, and holds
//! what several of them share (reading a config, finding the running deployment, flags).

mod audit;
mod bench;
mod chaos;
mod db;
mod demo_origin;
mod dns;
mod explain;
mod export;
mod functions;
mod health;
mod invalidate;
mod kvs;
mod secrets;
mod sim;
mod summary;
mod up;
mod validate;

use anyhow::{Context, Result};
use clap::Subcommand;
use meridian_config::{Config, DEFAULT_CONFIG, DEFAULT_ORIGIN};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Cmd {
    /// Start every node of a deployment on this machine and supervise them until Ctrl-C.
    ///
    /// Each node (load balancer, service instance) is its own process on its own loopback
    /// address. Crashed nodes restart with backoff. When all are healthy, a table of nodes
    /// and endpoints is printed and written to <state-dir>/endpoints.json.
    Up(up::UpArgs),
    /// Run one node of a deployment in this process (how nodes run on real machines).
    Run(up::RunArgs),
    /// Check a config and print a summary of the deployment, or every error in it.
    ///
    /// Exits 0 when the config is valid and 2 when it is not.
    Validate(validate::ValidateArgs),
    /// Check the health of an endpoint or of every node of a running deployment.
    ///
    /// Exits 0 only when nothing is unhealthy.
    Health(health::HealthArgs),
    /// Run the RichesReach API stand-in on its own (the origin Meridian is tested against).
    DemoOrigin(demo_origin::DemoOriginArgs),
    /// Remove paths from the cache of every edge PoP of a running deployment.
    ///
    /// Paths are CloudFront invalidation paths: they start with /, and * matches any run
    /// of characters ('/static/*'). Every cached variant of a path goes (all query strings,
    /// encodings and Vary variants). Exits 0 when every PoP has applied it.
    Invalidate(invalidate::InvalidateArgs),
    /// Edge functions: run one on a test event (CloudFront's TestFunction), or list a
    /// config's functions and where they run.
    Functions {
        #[command(subcommand)]
        command: functions::FunctionsCmd,
    },
    /// The key value stores of a running deployment's PoPs: list, get, put, delete.
    ///
    /// put and delete go to every PoP and exit 0 only when every PoP applied them.
    Kvs {
        #[command(subcommand)]
        command: kvs::KvsCmd,
    },
    /// Print the admin actions of every node (invalidations, WAN and DNS changes, Redis
    /// promotions, secret rotations, refused attempts), merged in time order, as CloudTrail's event history.
    Audit(audit::AuditArgs),
    /// Measure a running deployment under simulated global load.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCmd,
    },
    /// Break part of a running deployment under global load and measure the damage.
    Chaos {
        #[command(subcommand)]
        command: chaos::ChaosCmd,
    },
    /// The simulated planet: the latency model between places.
    Sim {
        #[command(subcommand)]
        command: sim::SimCmd,
    },
    /// Ask the global DNS of a running deployment.
    Dns {
        #[command(subcommand)]
        command: dns::DnsCmd,
    },
    /// Write the console's dashboards and alarms for Grafana and Prometheus.
    Export {
        #[command(subcommand)]
        command: export::ExportCmd,
    },
    /// The data tier by hand: `db promote NODE` makes a standby take over once nobody
    /// leads (the manual promotion policy).
    Db {
        #[command(subcommand)]
        command: db::DbCmd,
    },
    /// Rotate secrets with a grace period, and list them (never their values).
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCmd,
    },
    /// Print the version.
    Version,
}

/// Runs one subcommand to its exit code.
pub async fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Up(args) => up::up(args).await,
        Cmd::Run(args) => up::run(args).await,
        Cmd::Validate(args) => validate::run(args),
        Cmd::Health(args) => health::run(args).await,
        Cmd::DemoOrigin(args) => demo_origin::run(args).await,
        Cmd::Invalidate(args) => invalidate::run(args).await,
        Cmd::Functions { command } => functions::run(command),
        Cmd::Kvs { command } => kvs::run(command).await,
        Cmd::Audit(args) => audit::run(args),
        Cmd::Bench { command } => bench::run(command).await,
        Cmd::Chaos { command } => chaos::run(command).await,
        Cmd::Sim { command } => sim::run(command),
        Cmd::Dns { command } => dns::run(command).await,
        Cmd::Export { command } => export::run(command),
        Cmd::Db { command } => db::run(command).await,
        Cmd::Secrets { command } => secrets::run(command),
        Cmd::Version => {
            println!("meridian {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An error and its causes on one line, each cause once: many of our errors already name
/// their cause in their own message, and repeating it would only add noise.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Reads a config; on invalid input prints every error and exits with status 2.
pub(crate) fn load_config(path: Option<&Path>) -> Result<(Config, String), ExitCode> {
    let (text, origin) = match path {
        None => (DEFAULT_CONFIG.to_owned(), DEFAULT_ORIGIN.to_owned()),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (t, p.display().to_string()),
            Err(e) => {
                eprintln!("error: cannot read config file {}: {e}", p.display());
                return Err(ExitCode::from(2));
            }
        },
    };
    match Config::parse(&text, &origin) {
        Ok(c) => Ok((c, text)),
        Err(errors) => {
            eprintln!("{errors}");
            Err(ExitCode::from(2))
        }
    }
}

/// The config and state of the deployment a running `meridian up` writes to `state_dir`.
pub(crate) fn running_deployment(
    state_dir: &Path,
) -> Result<(Config, meridian_config::state::DeploymentState)> {
    let state = meridian_config::state::DeploymentState::read(state_dir).with_context(|| {
        format!(
            "no running deployment in {} (start one with `meridian up`, or pass --state-dir)",
            state_dir.display()
        )
    })?;
    let config = Config::load(&state.config).with_context(|| {
        format!(
            "cannot read the deployment's config {}",
            state.config.display()
        )
    })?;
    Ok((config, state))
}

/// The deployment's admin token, from where its `[secrets]` says (the state dir's file by
/// default), for the CLI's calls to admin endpoints.
pub(crate) fn admin_token(config: &Config, state_dir: &Path) -> Result<String> {
    Ok(
        meridian_http::secrets::AdminToken::load(&config.secrets.admin_token, state_dir)
            .context("cannot read the deployment's admin token")?
            .current(),
    )
}

/// A TLS client that trusts the development certificate `up` made in `state_dir`.
pub(crate) fn dev_cert_client(state_dir: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let (cert, _) = meridian_http::tls::dev_cert_paths(state_dir);
    client_trusting(&cert).with_context(|| "--tls needs the deployment's development certificate")
}

/// A TLS client that trusts the certificates in a PEM file.
pub(crate) fn client_trusting(pem: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("cannot read certificates from {}", pem.display()))?
    {
        roots.add(c.context("a certificate in the file")?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// A duration given on the command line, or the message naming the flag and the fix.
pub(crate) fn duration_flag(flag: &str, value: &str) -> Result<Duration, String> {
    meridian_config::units::parse_duration(value)
        .map_err(|e| format!("--{flag}: {}\n  = fix: {}", e.problem, e.fix))
}

#[cfg(test)]
mod tests {
    use super::describe;

    /// An error that names its cause in its message and also returns it as its source.
    #[derive(Debug)]
    struct Bind(std::io::Error);
    impl std::fmt::Display for Bind {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot listen on 127.0.0.1:53: {}", self.0)
        }
    }
    impl std::error::Error for Bind {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let said = io.to_string();
        let e = anyhow::Error::new(Bind(io)).context("dns-1 stopped");
        assert_eq!(
            describe(&e),
            format!("dns-1 stopped: cannot listen on 127.0.0.1:53: {said}")
        );
        let plain = anyhow::anyhow!("outer").context("top");
        assert_eq!(describe(&plain), "top: outer");
    }
}
