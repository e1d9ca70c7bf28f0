//! The `meridian` command: a thin layer of subcommands over the libraries.

mod audit_cmd;
mod secrets_cmd;
mod secrets_tls;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use meridian_config::{Config, DEFAULT_CONFIG, DEFAULT_ORIGIN};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod chaos_cmd;
mod db_cmd;
mod explain;
mod summary;
use chaos_cmd::ChaosCmd;
use explain::{render_explain, urlencode};
use summary::summary;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: a self-hosted multi-region edge and traffic platform",
    long_about = "Meridian runs what a CloudFront + Route 53 + ALB deployment does, from one config \
                  file and one binary. `meridian up` starts the whole deployment on this machine; \
                  `meridian run` starts one node of it on a real machine.\n\n\
                  With no --config, the embedded default is used: the RichesReach deployment with \
                  regions us-east-1 (primary), eu-west-1 and ap-southeast-1."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start every node of a deployment on this machine and supervise them until Ctrl-C.
    ///
    /// Each node (load balancer, service instance) is its own process on its own loopback
    /// address. Crashed nodes restart with backoff. When all are healthy, a table of nodes
    /// and endpoints is printed and written to <state-dir>/endpoints.json.
    Up {
        /// Deployment config (meridian.toml); the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where endpoints.json, logs and the config copy go.
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
    },
    /// Run one node of a deployment in this process (how nodes run on real machines).
    Run {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The node's name, as `meridian validate` lists them (e.g. lb-us-east-1).
        #[arg(long)]
        node: String,
    },
    /// Check a config and print a summary of the deployment, or every error in it.
    ///
    /// Exits 0 when the config is valid and 2 when it is not.
    Validate {
        /// The config file; the embedded default when omitted.
        file: Option<PathBuf>,
        /// Print the embedded default config and exit (a starting point for your own).
        #[arg(long, conflicts_with = "file")]
        print_default: bool,
    },
    /// Check the health of an endpoint or of every node of a running deployment.
    ///
    /// Exits 0 only when nothing is unhealthy.
    Health {
        /// An application endpoint, such as http://127.10.1.1:8080 (a load balancer).
        #[arg(
            long,
            required_unless_present = "state_dir",
            conflicts_with = "state_dir"
        )]
        url: Option<String>,
        /// The state dir of a running `meridian up`: checks every node.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Also write the report as JSON to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Responses slower than this many milliseconds count as degraded.
        #[arg(long, default_value_t = 1000)]
        slow_ms: u64,
        /// For an https:// URL: the certificate (PEM) to trust, such as a deployment's
        /// <state-dir>/tls/dev-cert.pem.
        #[arg(long, requires = "url")]
        cacert: Option<PathBuf>,
    },
    /// Run the RichesReach API stand-in on its own (the origin Meridian is tested against).
    DemoOrigin {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: SocketAddr,
        #[arg(long, default_value = "local")]
        region: String,
        #[arg(long, default_value = "local-a")]
        az: String,
        #[arg(long, default_value = "demo-1")]
        instance: String,
        /// Artificial work per API request, such as "5ms".
        #[arg(long, default_value = "0ms")]
        processing_time: String,
    },
    /// Remove paths from the cache of every edge PoP of a running deployment.
    ///
    /// Paths are CloudFront invalidation paths: they start with /, and * matches any run
    /// of characters ('/static/*'). Every cached variant of a path goes (all query strings,
    /// encodings and Vary variants). Exits 0 when every PoP has applied it.
    Invalidate {
        /// One or more paths, such as '/static/*' '/api/quotes/AAPL' (quote wildcards).
        #[arg(long, required = true, num_args = 1..)]
        paths: Vec<String>,
        /// The state dir of a running `meridian up` (endpoints.json and admin-token).
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
    },
    /// Print the admin actions of every node (invalidations, WAN and DNS changes, Redis
    /// promotions, secret rotations, refused attempts), merged in time order, as CloudTrail's event history.
    Audit {
        /// The deployment's state dir (its logs/audit-<node>.jsonl files).
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
        /// Only events this recent, such as 1h or 15m.
        #[arg(long)]
        since: Option<String>,
        /// JSON lines instead of columns.
        #[arg(long)]
        json: bool,
    },
    /// Measure a running deployment under simulated global load.
    Bench {
        #[command(subcommand)]
        command: BenchCmd,
    },
    /// Break part of a running deployment under global load and measure the damage.
    Chaos {
        #[command(subcommand)]
        command: ChaosCmd,
    },
    /// The simulated planet: the latency model between places.
    Sim {
        #[command(subcommand)]
        command: SimCmd,
    },
    /// Ask the global DNS of a running deployment.
    Dns {
        #[command(subcommand)]
        command: DnsCmd,
    },
    /// Write the console's dashboards and alarms for Grafana and Prometheus.
    Export {
        #[command(subcommand)]
        command: ExportCmd,
    },
    /// The data tier by hand: `db promote NODE` makes a standby take over once nobody
    /// leads (the manual promotion policy).
    Db {
        #[command(subcommand)]
        command: db_cmd::DbCmd,
    },
    /// Rotate secrets with a grace period, and list them (never their values).
    Secrets {
        #[command(subcommand)]
        command: secrets_cmd::SecretsCmd,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum ExportCmd {
    /// A Grafana dashboard (JSON) with the console's panels over Prometheus.
    Grafana {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Prometheus recording and alerting rules (5xxErrorRate, CacheHitRate,
    /// HealthyHostCount, and one alert per [[console.alarm]]), for `promtool check rules`.
    PrometheusRules {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// How much a WAN relay adds beyond the latency it models, under load: a `wan` node of
    /// its own (loopback 127.79.0.0/16; no deployment needed) between many connections and
    /// an echo server, against the same connections going direct.
    Relay {
        /// Concurrent connections ping-ponging 64-byte messages.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// How long each of the two runs (direct, relayed) lasts.
        #[arg(long, default_value = "5s")]
        duration: String,
        /// The round trip the relay models.
        #[arg(long, default_value = "20ms")]
        rtt: String,
        /// Run the relay in this process instead of a `wan` node of its own.
        #[arg(long)]
        in_process: bool,
    },
    /// Compare the seed's "before" (every client to us-east-1), multi-region with latency
    /// DNS, and the full deployment with edge PoPs, under the same load from every client
    /// location; judge the seed's promises. Writes report.md, report.json, latency.svg.
    ///
    /// Needs a running `meridian up` with `[simulation] wan = true` (the default), so that
    /// distance costs what the latency model says.
    Global {
        /// The state dir of the running deployment.
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
        /// Total time, split evenly over the three architectures.
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Requests per second from each client location (open loop).
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// At most this many requests per location and architecture.
        #[arg(long, default_value_t = 20_000)]
        max_requests: u64,
        /// A new connection per request, so TCP handshakes cost their round trips.
        #[arg(long)]
        new_connections: bool,
        /// Viewers use HTTPS to the PoPs (TLS handshakes cost round trips too), trusting
        /// the development certificate in the state dir; implies --new-connections.
        #[arg(long)]
        tls: bool,
        /// Where the reports go.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SimCmd {
    /// Print the modelled round trip from every client location to every region and PoP.
    ///
    /// Great-circle distance over light in fibre (200 km per ms one way), times the route
    /// inflation, plus the access cost, with the config's [[simulation.latency]] overrides.
    Latency {
        /// Deployment config; the embedded default when omitted.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print JSON (with the fibre-only physical limit) for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DnsCmd {
    /// Show the answer a client would get and why: policy, candidates, health, latencies,
    /// and the rule that decided (as Route 53's TestDNSAnswer).
    Explain {
        /// The name to ask for, such as api.richesreach.example.
        name: String,
        /// The record type.
        #[arg(default_value = "A")]
        r#type: String,
        /// The client's address (a client location's network, see endpoints.json).
        #[arg(long)]
        client: std::net::IpAddr,
        /// The state dir of a running `meridian up`.
        #[arg(long, default_value = ".meridian")]
        state_dir: PathBuf,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

/// An error and its causes on one line, each cause once: many of our errors already name
/// their cause in their own message, and repeating it would only add noise.
fn describe(e: &anyhow::Error) -> String {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// Reads a config; on invalid input prints every error and exits with status 2.
fn load_config(path: Option<&Path>) -> Result<(Config, String), ExitCode> {
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

async fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Invalidate { paths, state_dir } => invalidate(&paths, &state_dir).await,
        Cmd::Audit {
            state_dir,
            since,
            json,
        } => audit_cmd::print(&state_dir, since.as_deref(), json),
        Cmd::Secrets { command } => secrets_cmd::run(command),
        Cmd::Db { command } => db_cmd::run(command).await,
        Cmd::Bench {
            command:
                BenchCmd::Relay {
                    connections,
                    duration,
                    rtt,
                    in_process,
                },
        } => {
            let parse = |flag: &str, v: &str| duration_flag(flag, v).map_err(anyhow::Error::msg);
            let at = if in_process {
                meridian_sim::overhead::RelayAt::InProcess
            } else {
                meridian_sim::overhead::RelayAt::Node {
                    exe: std::env::current_exe()
                        .context("cannot find the meridian binary to start the wan node")?,
                    work: std::env::temp_dir()
                        .join(format!("meridian-relay-bench-{}", std::process::id())),
                }
            };
            let report = meridian_sim::overhead::measure(
                connections,
                parse("duration", &duration)?,
                parse("rtt", &rtt)?,
                at,
            )
            .await
            .map_err(anyhow::Error::msg)?;
            print!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            command:
                BenchCmd::Global {
                    state_dir,
                    duration,
                    rate,
                    max_requests,
                    new_connections,
                    tls,
                    out,
                },
        } => {
            let total = match duration_flag("duration", &duration) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let (config, state) = running_deployment(&state_dir)?;
            let tls = if tls {
                Some(dev_cert_client(&state_dir)?)
            } else {
                None
            };
            let opts = meridian_sim::global::GlobalOptions {
                config,
                state,
                per_architecture: total / 3,
                rate,
                max_requests,
                new_connections: new_connections || tls.is_some(),
                tls,
                data_chaos: ["kill-db-primary", "kill-region"]
                    .iter()
                    .filter_map(|s| {
                        let path =
                            meridian_sim::data_chaos::DataChaosReport::latest_path(&state_dir, s);
                        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
                    })
                    .collect(),
            };
            let report = meridian_sim::global::run(&opts, |line| eprintln!("{line}"))
                .await
                .map_err(anyhow::Error::msg)?;
            let files = report
                .write(&out)
                .with_context(|| format!("cannot write to {}", out.display()))?;
            print!("{}", report.markdown());
            for f in files {
                eprintln!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Chaos { command } => chaos_cmd::run(command).await,
        Cmd::Sim {
            command: SimCmd::Latency { config, json },
        } => {
            let cfg = match load_config(config.as_deref()) {
                Ok((c, _)) => c,
                Err(code) => return Ok(code),
            };
            let matrix = meridian_sim::World::new(&cfg).matrix();
            if json {
                println!("{}", serde_json::to_string_pretty(&matrix)?);
            } else {
                println!("{matrix}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Export { command } => {
            let (config, out) = match &command {
                ExportCmd::Grafana { config, out } | ExportCmd::PrometheusRules { config, out } => {
                    (config, out)
                }
            };
            let cfg = match load_config(config.as_deref()) {
                Ok((c, _)) => c,
                Err(code) => return Ok(code),
            };
            let text = match command {
                ExportCmd::Grafana { .. } => {
                    serde_json::to_string_pretty(&meridian_console::export::grafana(&cfg))? + "\n"
                }
                ExportCmd::PrometheusRules { .. } => {
                    meridian_console::export::prometheus_rules(&cfg)
                }
            };
            match out {
                Some(path) => {
                    std::fs::write(path, text)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Version => {
            println!("meridian {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Validate {
            file,
            print_default,
        } => {
            if print_default {
                print!("{DEFAULT_CONFIG}");
                return Ok(ExitCode::SUCCESS);
            }
            match load_config(file.as_deref()) {
                Ok((cfg, _)) => {
                    // Record values are checked when the zone is built.
                    if let Err(e) = meridian_dns::Zone::build(&cfg) {
                        eprintln!("error: {e}\n  --> {}\n  = fix: correct the record in the [[dns.record]] list", cfg.origin);
                        return Ok(ExitCode::from(2));
                    }
                    print!("{}", summary(&cfg));
                    Ok(ExitCode::SUCCESS)
                }
                Err(code) => Ok(code),
            }
        }
        Cmd::Up { config, state_dir } => {
            meridian_telemetry::init_logs("warn");
            let config_path_arg = config.clone();
            let (config, config_text) = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let exe = std::env::current_exe()
                .context("cannot find the meridian binary to start nodes with")?;
            meridian_supervisor::up(meridian_supervisor::UpOptions {
                config_file: config_path_arg,
                config,
                config_text,
                state_dir,
                exe,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { config, node } => {
            meridian_telemetry::init_logs("info");
            let (config, _) = match load_config(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            match meridian_supervisor::run_node(&config, &node).await {
                Ok(()) => Ok(ExitCode::SUCCESS),
                Err(e) if e.needs_a_person() => {
                    eprintln!("error: {}", describe(&anyhow::Error::new(e)));
                    Ok(ExitCode::from(meridian_supervisor::EXIT_NEEDS_A_PERSON))
                }
                Err(e) => Err(e.into()),
            }
        }
        Cmd::Health {
            url,
            state_dir,
            output,
            slow_ms,
            cacert,
        } => {
            use meridian_health::report;
            let roots = match &cacert {
                Some(path) => Some(client_trusting(path)?),
                None => None,
            };
            let th = report::Thresholds {
                slow: Duration::from_millis(slow_ms),
                ..Default::default()
            };
            let rep = match (url, state_dir) {
                (Some(url), _) => report::check_url(&url, &th, roots.as_ref()).await?,
                (None, Some(dir)) => {
                    let state = meridian_config::state::DeploymentState::read(&dir)?;
                    report::check_state(&state, &th).await
                }
                (None, None) => unreachable!("clap requires --url or --state-dir"),
            };
            print!("{}", report::render(&rep));
            if let Some(path) = output {
                let json = serde_json::to_string_pretty(&rep)?;
                std::fs::write(&path, json)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("\nreport written to {}", path.display());
            }
            Ok(if rep.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Dns {
            command:
                DnsCmd::Explain {
                    name,
                    r#type,
                    client,
                    state_dir,
                    json,
                },
        } => {
            let state = meridian_config::state::DeploymentState::read(&state_dir)?;
            let node = state
                .nodes
                .iter()
                .find(|n| n.spec.role == meridian_config::Role::Dns)
                .context("the deployment runs no DNS node")?;
            let path = format!(
                "/explain?name={}&type={}&client={client}",
                urlencode(&name),
                urlencode(&r#type)
            );
            let req = http::Request::get(path)
                .header(http::header::HOST, node.spec.admin.to_string())
                .body(http_body_util::Full::new(hyper::body::Bytes::new()))?;
            let res = meridian_health::fetch(node.spec.admin, req, Duration::from_secs(5), 1 << 20)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot reach {} at {}: {e}",
                        node.spec.name,
                        node.spec.admin
                    )
                })?;
            let text = String::from_utf8_lossy(&res.body).into_owned();
            if res.status != 200 {
                anyhow::bail!("{}", text.trim());
            }
            if json {
                println!("{text}");
            } else {
                let v: serde_json::Value = serde_json::from_str(&text)?;
                print!("{}", render_explain(&v));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::DemoOrigin {
            listen,
            region,
            az,
            instance,
            processing_time,
        } => {
            meridian_telemetry::init_logs("info");
            let processing_time = meridian_config::units::parse_duration(&processing_time)
                .map_err(|e| anyhow::anyhow!("--processing-time: {}; {}", e.problem, e.fix))?;
            let opts = meridian_demo::DemoOptions {
                identity: meridian_demo::Identity {
                    region,
                    az,
                    instance,
                },
                processing_time,
                database: None,
                quote_cache: None,
            };
            eprintln!("demo origin on http://{listen} (try /api/quotes/AAPL); Ctrl-C stops it");
            meridian_demo::serve(listen, opts, meridian_http::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `meridian invalidate`: the same paths to every PoP, with progress and a summary.
async fn invalidate(paths: &[String], state_dir: &Path) -> Result<ExitCode> {
    if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
        eprintln!("error: `{bad}` is not a path\n  = fix: invalidation paths start with /, such as '/static/*'");
        return Ok(ExitCode::from(2));
    }
    let (_, state) = running_deployment(state_dir)?;
    let token_path = state_dir.join(meridian_edge::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("cannot read the admin token {}", token_path.display()))?;
    let pops: Vec<(String, SocketAddr)> = state
        .nodes
        .iter()
        .filter(|n| n.spec.role == meridian_config::Role::Edge)
        .map(|n| {
            (
                n.spec.name.trim_start_matches("edge-").to_owned(),
                n.spec.admin,
            )
        })
        .collect();
    if pops.is_empty() {
        eprintln!(
            "error: the deployment in {} has no edge PoPs",
            state_dir.display()
        );
        return Ok(ExitCode::from(2));
    }
    let id = format!(
        "I{:016X}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    let total = pops.len();
    eprintln!("invalidation {id}: {} path(s) to {total} PoPs", paths.len());
    let mut done = 0;
    let results = meridian_edge::client::invalidate_all(pops, token.trim(), paths, &id, |r| {
        done += 1;
        match &r.result {
            Ok(t) => eprintln!(
                "  [{done}/{total}] {:<12} applied in {:.1} ms",
                r.pop,
                t.as_secs_f64() * 1e3
            ),
            Err(e) => eprintln!("  [{done}/{total}] {:<12} FAILED: {e}", r.pop),
        }
    })
    .await;
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if failed == 0 {
        println!("Completed: every PoP ({total}) has applied {id}");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("InProgress: {failed} of {total} PoPs did not apply {id}; run it again when they are up");
        Ok(ExitCode::FAILURE)
    }
}

/// The config and state of the deployment a running `meridian up` writes to `state_dir`.
fn running_deployment(
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

/// A TLS client that trusts the development certificate `up` made in `state_dir`.
fn dev_cert_client(state_dir: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let (cert, _) = meridian_http::tls::dev_cert_paths(state_dir);
    client_trusting(&cert).with_context(|| "--tls needs the deployment's development certificate")
}

/// A TLS client that trusts the certificates in a PEM file.
fn client_trusting(pem: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
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
fn duration_flag(flag: &str, value: &str) -> Result<Duration, String> {
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
