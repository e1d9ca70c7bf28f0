//! `meridian demo-origin`: the RichesReach API stand-in on its own.

use anyhow::Result;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct DemoOriginArgs {
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
    /// The version it reports (`x-service-version`, `/health`). One ending in `-broken`
    /// fails its health checks on purpose: a test aid for rollbacks.
    #[arg(long, default_value = "1")]
    service_version: String,
}

pub async fn run(a: DemoOriginArgs) -> Result<ExitCode> {
    meridian_telemetry::init_logs("info");
    let processing_time = meridian_config::units::parse_duration(&a.processing_time)
        .map_err(|e| anyhow::anyhow!("--processing-time: {}; {}", e.problem, e.fix))?;
    let opts = meridian_demo::DemoOptions {
        identity: meridian_demo::Identity {
            region: a.region,
            az: a.az,
            instance: a.instance,
        },
        processing_time,
        database: None,
        quote_cache: None,
    };
    eprintln!(
        "demo origin on http://{} (try /api/quotes/AAPL); Ctrl-C stops it",
        a.listen
    );
    meridian_demo::serve_version(
        a.listen,
        opts,
        meridian_demo::ServiceVersion(a.service_version),
        meridian_http::ServerOptions::default(),
        meridian_http::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
