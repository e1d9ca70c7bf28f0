//! The subcommands, one file each; this file lists them and sends each to its file. What
//! several of them share lives in modules of its own (`deployment`, `flags`, `errors`), so
//! the subcommands never depend back on this dispatcher.

mod apply;
mod audit;
mod bench;
mod chaos;
mod db;
mod demo_origin;
mod deploy;
mod deployment;
mod dns;
mod errors;
mod explain;
mod export;
mod flags;
mod functions;
mod health;
mod invalidate;
mod kvs;
mod rollout;
mod secrets;
mod sim;
mod summary;
mod token;
mod up;
mod validate;

pub use errors::describe;

use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

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
    /// Run the nodes `[[host]]` places on one host, supervised as `up` supervises them all
    /// (how a deployment runs on machines of its own).
    Agent(up::AgentArgs),
    /// Write a bundle per host (config, secrets, systemd unit, install script) to start a
    /// deployment on machines of its own.
    Deploy(deploy::DeployArgs),
    /// Check a config and print a summary of the deployment, or every error in it.
    ///
    /// Exits 0 when the config is valid and 2 when it is not.
    Validate(validate::ValidateArgs),
    /// Change the running deployment to a new config: print the plan (what changes on
    /// which nodes, reload or restart), then reload the nodes in place.
    ///
    /// Exits 2 when the new config does not validate (nothing changes).
    Apply(apply::ApplyArgs),
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
    /// Write the deployment for other tools: Kubernetes manifests, and the console's dashboards and alarms for Grafana and Prometheus.
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
    /// Roll a new version of the service out to a running deployment, region by region and
    /// AZ by AZ, with ECS's bounds (minimum_healthy_percent, maximum_percent) and automatic
    /// rollback (the deployment circuit breaker).
    ///
    /// Exits 0 when every instance runs the new version, 1 when it was rolled back (the
    /// reason on one line), 2 when it could not start.
    Rollout(rollout::RolloutArgs),
    /// Rotate secrets with a grace period, and list them (never their values).
    Secrets {
        #[command(subcommand)]
        command: secrets::SecretsCmd,
    },
    /// Mint a development JWT for a JWT authorizer whose key `up` made (the default
    /// deployment's `users`, which guards /api/portfolio/*). Prints the token.
    Token(token::TokenArgs),
    /// Print the version.
    Version,
}

/// Runs one subcommand to its exit code.
pub async fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Up(args) => up::up(args).await,
        Cmd::Run(args) => up::run(args).await,
        Cmd::Agent(args) => up::agent(args).await,
        Cmd::Deploy(args) => deploy::run(args),
        Cmd::Validate(args) => validate::run(args),
        Cmd::Apply(args) => apply::run(args).await,
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
        Cmd::Rollout(args) => rollout::run(args).await,
        Cmd::Token(args) => token::run(args),
        Cmd::Version => {
            println!("meridian {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}
