//! `meridian chaos`: the fault scenarios under load, and the data tier's watch beside
//! them (RPO, RTO, promotion) when the fault reaches database nodes.

use super::deployment::running_deployment;
use super::flags::duration_flag;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What every chaos scenario takes.
#[derive(clap::Args)]
pub(crate) struct ChaosRun {
    /// The state dir of the running deployment.
    #[arg(long, default_value = ".meridian")]
    state_dir: PathBuf,
    /// How long the load runs; the fault starts a fifth of the way in.
    #[arg(long, default_value = "30s")]
    duration: String,
    /// How long the fault lasts.
    #[arg(long, default_value = "10s")]
    outage: String,
    /// Requests per second from each client location.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Also write chaos.md and chaos.json here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ChaosCmd {
    /// Take a region down (its load balancer and instances freeze, as in a power or network
    /// loss) while every client location sends load through the full deployment, then bring
    /// it back. Reports failed requests (cacheable content apart), how long the PoPs and
    /// the DNS took to stop using the region, and how long until they used it again.
    /// Exits 1 if any request for cacheable content failed.
    KillRegion {
        /// The region, such as eu-west-1.
        region: String,
        #[command(flatten)]
        run: ChaosRun,
    },
    /// Freeze one availability zone's instances under global load, then thaw them; the
    /// region's balancer must take them out and its clients must not notice.
    KillAz {
        /// The AZ, such as us-east-1a.
        az: String,
        #[command(flatten)]
        run: ChaosRun,
    },
    /// Freeze one edge PoP under global load, then thaw it; the DNS must send its viewers
    /// to another PoP.
    KillPop {
        /// The PoP, such as london.
        pop: String,
        #[command(flatten)]
        run: ChaosRun,
    },
    /// Make every path to a region slower (a degraded origin) under global load; PoPs that
    /// measure it may move to another region.
    SlowOrigin {
        /// The region, such as eu-west-1.
        region: String,
        /// Extra delay each way, such as 200ms.
        #[arg(long, default_value = "200ms")]
        extra: String,
        #[command(flatten)]
        run: ChaosRun,
    },
    /// Freeze the database primary's node (its keeper and PostgreSQL) under a write load
    /// through every region's writer endpoint, then thaw it. Reports the RPO (acknowledged
    /// commits the primary does not hold afterwards) and the RTO (fault to the next
    /// acknowledged write). Exits 1 if an acknowledged commit was lost.
    KillDbPrimary {
        #[command(flatten)]
        run: ChaosRun,
    },
    /// Cut one PoP off from one region in the WAN (a network partition) under global load,
    /// then heal it. The PoP must fail over to another region without failing requests.
    Partition {
        /// The PoP, such as london.
        #[arg(long)]
        pop: String,
        /// The region, such as eu-west-1.
        #[arg(long)]
        region: String,
        #[command(flatten)]
        run: ChaosRun,
    },
}

/// Runs one chaos scenario and prints (and with `--out`, writes) its report.
pub(crate) async fn run(command: ChaosCmd) -> Result<ExitCode> {
    let (fault, run) = match command {
        ChaosCmd::KillDbPrimary { run } => return chaos_kill_db_primary(run).await,
        ChaosCmd::KillRegion { region, run } => {
            (meridian_sim::chaos::Fault::KillRegion { region }, run)
        }
        ChaosCmd::Partition { pop, region, run } => {
            (meridian_sim::chaos::Fault::Partition { pop, region }, run)
        }
        ChaosCmd::KillAz { az, run } => (meridian_sim::chaos::Fault::KillAz { az }, run),
        ChaosCmd::KillPop { pop, run } => (meridian_sim::chaos::Fault::KillPop { pop }, run),
        ChaosCmd::SlowOrigin { region, extra, run } => {
            let extra = match duration_flag("extra", &extra) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            (
                meridian_sim::chaos::Fault::SlowOrigin { region, extra },
                run,
            )
        }
    };
    let ChaosRun {
        state_dir,
        duration,
        outage,
        rate,
        out,
    } = run;
    let parse = |flag: &str, v: &str| duration_flag(flag, v).map_err(anyhow::Error::msg);
    let (duration, outage) = (parse("duration", &duration)?, parse("outage", &outage)?);
    if outage >= duration {
        eprintln!("error: --outage must be shorter than --duration");
        return Ok(ExitCode::from(2));
    }
    let (config, state) = running_deployment(&state_dir)?;
    let admin_token = super::deployment::admin_token(&config, &state_dir).ok();
    let opts = meridian_sim::chaos::ChaosOptions {
        config,
        state,
        fault,
        admin_token,
        duration,
        outage,
        rate,
    };
    // Freezing a region or an AZ with database nodes: the data tier's watch runs beside
    // the traffic load and reports RPO, RTO and promotion.
    let data = match &opts.fault {
        meridian_sim::chaos::Fault::KillRegion { region } => {
            let frozen = |n: &meridian_config::NodeSpec| n.region.as_deref() == Some(region);
            data_watch_for(&opts, &state_dir, "kill-region", region, frozen).await?
        }
        meridian_sim::chaos::Fault::KillAz { az } => {
            let frozen = |n: &meridian_config::NodeSpec| n.az.as_deref() == Some(az);
            data_watch_for(&opts, &state_dir, "kill-az", az, frozen).await?
        }
        _ => None,
    };
    let (phases_tx, phases_rx) =
        tokio::sync::watch::channel(meridian_sim::data_chaos::Phase::Before);
    let observed = data.map(|w| tokio::spawn(meridian_sim::data_chaos::observe(w, phases_rx)));
    let report = meridian_sim::chaos::run(&opts, |l| eprintln!("{l}"), Some(&phases_tx))
        .await
        .map_err(anyhow::Error::msg)?;
    let mut ok = report.failed_cacheable == 0;
    let mut markdown = report.markdown();
    let mut json = serde_json::to_value(&report)?;
    if let Some(task) = observed {
        let data = task
            .await
            .context("the data tier's watch stopped")?
            .map_err(anyhow::Error::msg)?;
        ok &= !data.two_writers && data.old_primary_writes_after_promotion == 0;
        save_data_report(&state_dir, &data)?;
        markdown.push('\n');
        markdown.push_str(&data.markdown());
        json["data"] = serde_json::to_value(&data)?;
    }
    chaos_report(
        &markdown,
        serde_json::to_string_pretty(&json),
        out.as_deref(),
    )?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `validate` prints for a valid config.
/// Prints a chaos report, and writes it as chaos.md and chaos.json to `out` when given.
fn chaos_report(
    markdown: &str,
    json: serde_json::Result<String>,
    out: Option<&Path>,
) -> Result<()> {
    print!("{markdown}");
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("chaos.md"), markdown)?;
        std::fs::write(dir.join("chaos.json"), json?)?;
    }
    Ok(())
}

/// The data tier's watch for a `chaos` run that freezes the nodes `frozen` picks (those
/// of `place`, a region or an AZ), when they hold database nodes.
async fn data_watch_for(
    opts: &meridian_sim::chaos::ChaosOptions,
    state_dir: &Path,
    scenario: &str,
    place: &str,
    frozen: impl Fn(&meridian_config::NodeSpec) -> bool,
) -> Result<Option<meridian_sim::data_chaos::DataWatch>> {
    let in_place: Vec<String> = opts
        .state
        .nodes
        .iter()
        .filter(|n| frozen(&n.spec))
        .map(|n| n.spec.name.clone())
        .collect();
    let has_db = opts
        .state
        .nodes
        .iter()
        .any(|n| n.spec.role == meridian_config::Role::Db && in_place.contains(&n.spec.name));
    if !has_db {
        return Ok(None);
    }
    let data = meridian_sim::data_chaos::DataChaosOptions {
        config: opts.config.clone(),
        state: opts.state.clone(),
        password: db_password(state_dir)?,
        duration: opts.duration,
        outage: opts.outage,
    };
    let watch = meridian_sim::data_chaos::DataWatch::start(&data, scenario, Some(in_place))
        .await
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "data: writing from {} client location(s) through writer endpoints outside {place}, and directly to every database node",
        watch.endpoints()
    );
    Ok(Some(watch))
}

/// Keeps a data-tier chaos report in the state directory: `bench global` judges the RPO
/// and RTO promises by the last ones.
fn save_data_report(
    state_dir: &Path,
    report: &meridian_sim::data_chaos::DataChaosReport,
) -> Result<()> {
    let path = meridian_sim::data_chaos::DataChaosReport::latest_path(state_dir, &report.scenario);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The deployment's database password, from where its `[secrets]` says; re-read during
/// the run, so a rotation meanwhile does not cut the load off.
fn db_password(state_dir: &Path) -> Result<meridian_http::secrets::Secret> {
    let (config, _) = running_deployment(state_dir)?;
    if config.database.is_none() {
        anyhow::bail!(
            "the deployment in {} has no [database]",
            state_dir.display()
        );
    }
    meridian_http::secrets::configured(
        &config.secrets.db_password,
        state_dir,
        meridian_http::admin::DB_PASSWORD_FILE,
    )
    .context("cannot read the database password")
}

/// `meridian chaos kill-db-primary`: the data tier's failover under a write load.
async fn chaos_kill_db_primary(run: ChaosRun) -> Result<ExitCode> {
    let parse = |flag: &str, v: &str| duration_flag(flag, v).map_err(anyhow::Error::msg);
    let (duration, outage) = (
        parse("duration", &run.duration)?,
        parse("outage", &run.outage)?,
    );
    if outage >= duration {
        eprintln!("error: --outage must be shorter than --duration");
        return Ok(ExitCode::from(2));
    }
    let (config, state) = running_deployment(&run.state_dir)?;
    let password = db_password(&run.state_dir)?;
    let opts = meridian_sim::data_chaos::DataChaosOptions {
        config,
        state,
        password,
        duration,
        outage,
    };
    let report = meridian_sim::data_chaos::kill_db_primary(&opts, |l| eprintln!("{l}"))
        .await
        .map_err(anyhow::Error::msg)?;
    save_data_report(&run.state_dir, &report)?;
    chaos_report(
        &report.markdown(),
        serde_json::to_string_pretty(&report),
        run.out.as_deref(),
    )?;
    Ok(if report.lost == 0 && !report.two_writers {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
