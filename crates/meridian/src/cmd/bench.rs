//! `meridian bench`: the WAN relay's own cost, and the whole deployment under global load.

use super::deployment::{dev_cert_client, running_deployment};
use super::flags::duration_flag;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BenchCmd {
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
        /// With --tls semantics, but HTTP/3: a new QUIC connection per request to the
        /// PoPs (needs `[distribution] http_version = "http2and3"`); implies --tls.
        #[arg(long)]
        http3: bool,
        /// Where the reports go.
        #[arg(long)]
        out: PathBuf,
        /// Also run the full deployment's cacheable load twice, without and with the
        /// regional edge caches (needs `[distribution.tiered_cache]` on), and report the
        /// origin requests of each side by side.
        #[arg(long)]
        tiered_cache: bool,
    },
}

pub async fn run(command: BenchCmd) -> Result<ExitCode> {
    match command {
        BenchCmd::Relay {
            connections,
            duration,
            rtt,
            in_process,
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
        BenchCmd::Global {
            state_dir,
            duration,
            rate,
            max_requests,
            new_connections,
            tls,
            http3,
            out,
            tiered_cache,
        } => {
            let total = match duration_flag("duration", &duration) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let (config, state) = running_deployment(&state_dir)?;
            let tls = if tls || http3 {
                Some(dev_cert_client(&state_dir)?)
            } else {
                None
            };
            let tiered_cache = if tiered_cache {
                Some(
                    super::deployment::admin_token(&config, &state_dir)?
                        .trim()
                        .to_owned(),
                )
            } else {
                None
            };
            let opts = meridian_sim::global::GlobalOptions {
                tiered_cache,
                config,
                state,
                per_architecture: total / 3,
                rate,
                max_requests,
                new_connections: new_connections || tls.is_some(),
                tls,
                http3,
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
    }
}
