//! `meridian bench global`: the three architectures under the same global load, one after
//! the other against a running deployment, and the seed's promises judged from the result.

use crate::load::{self, Arch, LoadOptions, LocationRun};
use crate::world::{PlaceKind, World};
use meridian_config::state::DeploymentState;
use meridian_config::{Config, Role};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct GlobalOptions {
    pub config: Config,
    pub state: DeploymentState,
    /// How long each architecture runs.
    pub per_architecture: Duration,
    pub rate: f64,
    pub max_requests: u64,
    pub new_connections: bool,
    /// HTTPS to the PoPs (a new TLS connection per request) with these roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// With `tls`: HTTP/3 over a new QUIC connection per request to the PoPs.
    pub http3: bool,
    /// The last data-tier chaos runs on this deployment (`meridian chaos kill-db-primary`,
    /// `kill-region`): what the RPO and RTO verdicts read.
    pub data_chaos: Vec<crate::data_chaos::DataChaosReport>,
    /// The deployment's admin token, to also compare the full deployment with and without
    /// its regional edge caches (`tier_bench.rs`); None: no comparison.
    pub tiered_cache: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub requests: u64,
    pub failed: u64,
    pub availability: f64,
}

impl Percentiles {
    fn of(r: &LocationRun) -> Percentiles {
        let round = |x: f64| (x * 10.0).round() / 10.0;
        Percentiles {
            p50_ms: round(r.percentile_ms(0.50)),
            p95_ms: round(r.percentile_ms(0.95)),
            p99_ms: round(r.percentile_ms(0.99)),
            mean_ms: round(r.latency.mean() / 1e3),
            requests: r.ok + r.failed,
            failed: r.failed,
            availability: r.availability(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationReport {
    pub location: String,
    pub nearest_pop: String,
    pub nearest_region: String,
    /// Light in fibre to the nearest PoP and back: no deployment can beat it.
    pub physical_limit_ms: f64,
    pub results: BTreeMap<String, Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArchTotals {
    pub architecture: Arch,
    pub title: &'static str,
    pub requests: u64,
    pub failed: u64,
    pub availability: f64,
    pub mean_ms: f64,
    /// Requests that reached an application instance (health checks excluded).
    pub origin_requests: u64,
    /// Bytes that came from the origins: all client bytes without an edge, what the PoPs
    /// fetched with one.
    pub origin_bytes: u64,
    pub client_bytes: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub promise: &'static str,
    pub measured: String,
    /// None when this run cannot measure it.
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GlobalReport {
    pub deployment: String,
    pub seconds_per_architecture: f64,
    pub rate_per_location: f64,
    pub connections: &'static str,
    pub locations: Vec<LocationReport>,
    pub architectures: Vec<ArchTotals>,
    pub promises: Vec<Verdict>,
    /// Origin requests with and without the regional edge caches, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiered_cache: Option<crate::tier_bench::TierComparison>,
}

/// The first DNS server of a deployment, where clients query it (through the WAN relay
/// when there is one).
pub fn dns_server(state: &DeploymentState) -> Option<SocketAddr> {
    state
        .nodes
        .iter()
        .find(|n| n.spec.role == Role::Dns)
        .map(|n| n.spec.address)
}

/// Runs the three architectures and judges the seed's promises.
pub async fn run(
    opts: &GlobalOptions,
    mut say: impl FnMut(String),
) -> Result<GlobalReport, String> {
    let cfg = &opts.config;
    let dns =
        dns_server(&opts.state).ok_or("the deployment runs no DNS server ([dns] servers = 0)")?;
    if cfg.edges.is_empty() {
        return Err("the deployment has no edge PoPs to compare".into());
    }
    let world = World::new(cfg);
    let mut by_arch: Vec<(Arch, Vec<LocationRun>, f64, f64)> = Vec::new();
    for arch in Arch::ALL {
        say(format!(
            "{}: {:.1}s at {}/s from each of {} locations",
            arch.title(),
            opts.per_architecture.as_secs_f64(),
            opts.rate,
            cfg.client_locations.len()
        ));
        let before = crate::admin::origin_counters(&opts.state).await;
        let lo = LoadOptions {
            config: cfg.clone(),
            dns,
            duration: opts.per_architecture,
            rate: opts.rate,
            max_requests: opts.max_requests,
            new_connections: opts.new_connections,
            tls: opts.tls.clone(),
            http3: opts.http3,
            cacheable_only: false,
        };
        let runs = load::run(&lo, arch, load::show_progress).await;
        eprintln!();
        let after = crate::admin::origin_counters(&opts.state).await;
        by_arch.push((arch, runs, after.0 - before.0, after.1 - before.1));
    }
    let tiered_cache = match &opts.tiered_cache {
        Some(token) => {
            let lo = LoadOptions {
                config: cfg.clone(),
                dns,
                duration: opts.per_architecture,
                rate: opts.rate,
                max_requests: opts.max_requests,
                new_connections: opts.new_connections,
                tls: opts.tls.clone(),
                http3: opts.http3,
                cacheable_only: true,
            };
            Some(crate::tier_bench::compare(lo, &opts.state, token, &mut say).await?)
        }
        None => None,
    };
    let mut locations = Vec::new();
    for c in &cfg.client_locations {
        let Some(place) = world.place(PlaceKind::Client, &c.name) else {
            continue;
        };
        let pop = world.nearest(place, PlaceKind::Pop);
        let region = world.nearest(place, PlaceKind::Region);
        let mut results = BTreeMap::new();
        for (arch, runs, _, _) in &by_arch {
            if let Some(r) = runs.iter().find(|r| r.location == c.name) {
                results.insert(format!("{arch:?}"), Percentiles::of(r));
            }
        }
        locations.push(LocationReport {
            location: c.name.clone(),
            nearest_pop: pop.map(|p| p.name.clone()).unwrap_or_default(),
            nearest_region: region.map(|p| p.name.clone()).unwrap_or_default(),
            physical_limit_ms: pop
                .map(|p| (world.fibre_rtt(place, p).as_secs_f64() * 1e4).round() / 10.0)
                .unwrap_or(0.0),
            results,
        });
    }
    let architectures: Vec<ArchTotals> = by_arch
        .iter()
        .map(|(arch, runs, origin_requests, pop_bytes)| {
            let requests: u64 = runs.iter().map(|r| r.ok + r.failed).sum();
            let failed: u64 = runs.iter().map(|r| r.failed).sum();
            let ok: u64 = runs.iter().map(|r| r.ok).sum();
            let client_bytes: u64 = runs.iter().map(|r| r.bytes).sum();
            let mean_ms = load::mean_ms(runs).unwrap_or(f64::NAN);
            ArchTotals {
                architecture: *arch,
                title: arch.title(),
                requests,
                failed,
                availability: if requests == 0 {
                    0.0
                } else {
                    ok as f64 / requests as f64
                },
                mean_ms: (mean_ms * 10.0).round() / 10.0,
                origin_requests: *origin_requests as u64,
                origin_bytes: if *arch == Arch::Full {
                    *pop_bytes as u64
                } else {
                    client_bytes
                },
                client_bytes,
                errors: runs
                    .iter()
                    .flat_map(|r| r.errors.iter().cloned())
                    .take(10)
                    .collect(),
            }
        })
        .collect();
    let promises = judge(&locations, &architectures, &opts.data_chaos);
    Ok(GlobalReport {
        deployment: cfg.deployment.name.clone(),
        seconds_per_architecture: opts.per_architecture.as_secs_f64(),
        rate_per_location: opts.rate,
        connections: match (&opts.tls, opts.new_connections) {
            (Some(_), _) if opts.http3 => "new QUIC connection per request to the PoPs (HTTP/3), new TCP connection per request elsewhere",
            (Some(_), _) => "new TLS connection per request to the PoPs, new TCP connection per request elsewhere",
            (None, true) => "new connection per request",
            (None, false) => "keep-alive",
        },
        locations,
        architectures,
        promises,
        tiered_cache,
    })
}

/// The RTO and RPO promises, from the last data-tier chaos runs (a run of its own each:
/// a benchmark under load is no place to freeze the writer).
fn data_verdicts(data: &[crate::data_chaos::DataChaosReport]) -> Vec<Verdict> {
    if data.is_empty() {
        let how = "not measured yet: run `meridian chaos kill-db-primary` and `meridian chaos kill-region <writer region>` on this deployment first";
        return vec![
            Verdict {
                promise: "RTO < 5 min",
                measured: how.into(),
                met: None,
            },
            Verdict {
                promise: "RPO < 1 min",
                measured: how.into(),
                met: None,
            },
        ];
    }
    let each = |f: &dyn Fn(&crate::data_chaos::DataChaosReport) -> String| {
        data.iter()
            .map(|r| format!("{} {}", r.scenario, f(r)))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rto_met = data
        .iter()
        .all(|r| r.rto_seconds.is_some_and(|t| t < 300.0));
    let rpo_met = data.iter().all(|r| r.lost_span_seconds < 60.0);
    vec![
        Verdict {
            promise: "RTO < 5 min",
            measured: each(&|r| match r.rto_seconds {
                Some(t) => format!("{t:.1} s"),
                None => "writes did not come back".into(),
            }),
            met: Some(rto_met),
        },
        Verdict {
            promise: "RPO < 1 min",
            measured: each(&|r| {
                format!(
                    "{} of {} acknowledged commits lost ({:.1} s of writes)",
                    r.lost, r.acknowledged, r.lost_span_seconds
                )
            }),
            met: Some(rpo_met),
        },
    ]
}

fn judge(
    locations: &[LocationReport],
    archs: &[ArchTotals],
    data: &[crate::data_chaos::DataChaosReport],
) -> Vec<Verdict> {
    let full = |name: &str| {
        locations
            .iter()
            .find(|l| l.location == name)
            .and_then(|l| l.results.get("Full"))
    };
    let mut out = Vec::new();
    for (promise, loc, limit) in [
        (
            "US East < 50 ms (p95, New York, full deployment)",
            "new-york",
            50.0,
        ),
        (
            "EU West < 100 ms (p95, London, full deployment)",
            "london",
            100.0,
        ),
        (
            "AP Southeast < 150 ms (p95, Singapore, full deployment)",
            "singapore",
            150.0,
        ),
    ] {
        out.push(match full(loc) {
            Some(p) => Verdict {
                promise,
                measured: format!("{:.1} ms", p.p95_ms),
                met: Some(p.p95_ms < limit),
            },
            None => Verdict {
                promise,
                measured: format!("no client location `{loc}` in this deployment"),
                met: None,
            },
        });
    }
    let arch = |a: Arch| archs.iter().find(|x| x.architecture == a);
    if let (Some(before), Some(full)) = (arch(Arch::Before), arch(Arch::Full)) {
        out.push(Verdict {
            promise: "global average < 100 ms (mean, full deployment)",
            measured: format!("{:.1} ms", full.mean_ms),
            met: Some(full.mean_ms < 100.0),
        });
        let saved = |a: f64, b: f64| if b > 0.0 { 1.0 - a / b } else { 0.0 };
        let faster = saved(full.mean_ms, before.mean_ms);
        out.push(Verdict {
            promise: "60-80% faster global responses (mean, full vs before)",
            measured: format!("{:.0}% faster", faster * 100.0),
            met: Some(faster >= 0.60),
        });
        let load = saved(full.origin_requests as f64, before.origin_requests as f64);
        out.push(Verdict {
            promise: "50-70% less origin load (requests reaching instances)",
            measured: format!(
                "{:.0}% less ({} vs {})",
                load * 100.0,
                full.origin_requests,
                before.origin_requests
            ),
            met: Some(load >= 0.50),
        });
        let bw = saved(full.origin_bytes as f64, before.origin_bytes as f64);
        out.push(Verdict {
            promise: "40-60% bandwidth savings (bytes from origins)",
            measured: format!("{:.0}% saved", bw * 100.0),
            met: Some(bw >= 0.40),
        });
        // Zero failures in n requests bounds the failure rate below 3/n (95% confidence,
        // the rule of three): only a run of 30,000 or more can show 99.99%.
        let enough = full.requests >= 30_000;
        out.push(Verdict {
            promise: "99.99% availability (full deployment, this run)",
            measured: format!(
                "{:.3}% ({} of {} failed){}",
                full.availability * 100.0,
                full.failed,
                full.requests,
                if enough {
                    ""
                } else {
                    "; too few requests to show 99.99% (needs 30,000)"
                }
            ),
            met: if full.availability < 0.9999 {
                Some(false)
            } else {
                enough.then_some(true)
            },
        });
    }
    out.extend(data_verdicts(data));
    out
}

impl GlobalReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "# Global benchmark: `{}`\n\n{:.1} s per architecture, {} requests/s from each client location, {}.\n\
             Latency is from when each request was due to its last byte (open loop), in ms.\n\n",
            self.deployment, self.seconds_per_architecture, self.rate_per_location, self.connections
        );
        s.push_str("| location | before p50 / p95 / p99 | multi-region p50 / p95 / p99 | full p50 / p95 / p99 | physical limit | full availability |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|\n");
        for l in &self.locations {
            let cell = |k: &str| {
                l.results
                    .get(k)
                    .map(|p| format!("{:.1} / {:.1} / {:.1}", p.p50_ms, p.p95_ms, p.p99_ms))
                    .unwrap_or_else(|| "-".into())
            };
            let avail = l
                .results
                .get("Full")
                .map(|p| format!("{:.2}%", p.availability * 100.0))
                .unwrap_or_default();
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} (to {}) | {} |\n",
                l.location,
                cell("Before"),
                cell("MultiRegion"),
                cell("Full"),
                l.physical_limit_ms,
                l.nearest_pop,
                avail
            ));
        }
        s.push_str("\n| architecture | requests | failed | mean ms | origin requests | bytes from origins |\n|---|---:|---:|---:|---:|---:|\n");
        for a in &self.architectures {
            s.push_str(&format!(
                "| {} | {} | {} | {:.1} | {} | {} |\n",
                a.title, a.requests, a.failed, a.mean_ms, a.origin_requests, a.origin_bytes
            ));
        }
        s.push_str("\n## The seed's promises\n\n| promise | measured | verdict |\n|---|---|---|\n");
        for v in &self.promises {
            let verdict = match v.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            };
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                v.promise, v.measured, verdict
            ));
        }
        s.push_str(
            "\nThe physical limit is light in fibre along the great circle to the nearest PoP and back; \
             the WAN model adds route inflation and an access cost on top of it.\n",
        );
        if let Some(t) = &self.tiered_cache {
            s.push_str(&t.markdown());
        }
        s
    }

    /// A bar chart of p50 per location and architecture, with the physical limit marked.
    pub fn svg(&self) -> String {
        let (w, h, left, top, bottom) = (960.0, 420.0, 60.0, 40.0, 80.0);
        let plot_h = h - top - bottom;
        let max = self
            .locations
            .iter()
            .flat_map(|l| l.results.values().map(|p| p.p50_ms))
            .filter(|v| v.is_finite())
            .fold(1.0_f64, f64::max)
            * 1.1;
        let n = self.locations.len().max(1) as f64;
        let group = (w - left - 20.0) / n;
        let bar = group / 4.5;
        let colors = [
            ("Before", "#c0392b"),
            ("MultiRegion", "#e67e22"),
            ("Full", "#27ae60"),
        ];
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{left}\" y=\"22\" font-size=\"15\">p50 latency by client location (ms); black tick: physical limit to the nearest PoP</text>\n"
        );
        for i in 0..=4 {
            let v = max * i as f64 / 4.0;
            let y = top + plot_h - plot_h * i as f64 / 4.0;
            s.push_str(&format!(
                "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>\n",
                w - 20.0,
                left - 6.0,
                y + 4.0
            ));
        }
        for (i, l) in self.locations.iter().enumerate() {
            let x0 = left + group * i as f64 + bar * 0.5;
            for (k, (arch, color)) in colors.iter().enumerate() {
                if let Some(p) = l.results.get(*arch).filter(|p| p.p50_ms.is_finite()) {
                    let bh = plot_h * p.p50_ms / max;
                    s.push_str(&format!(
                        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{} {arch}: {:.1} ms</title></rect>\n",
                        x0 + bar * k as f64,
                        top + plot_h - bh,
                        bar * 0.9,
                        l.location,
                        p.p50_ms
                    ));
                }
            }
            let ly = top + plot_h - plot_h * l.physical_limit_ms / max;
            s.push_str(&format!(
                "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"black\" stroke-width=\"2\"/>\n",
                x0 - 2.0,
                x0 + bar * 3.0
            ));
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
                x0 + bar * 1.5,
                top + plot_h + 18.0,
                l.location
            ));
        }
        for (k, (arch, color)) in colors.iter().enumerate() {
            let x = left + 290.0 * k as f64;
            s.push_str(&format!(
                "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                h - 30.0,
                x + 18.0,
                h - 20.0,
                match *arch {
                    "Before" => Arch::Before.title(),
                    "MultiRegion" => Arch::MultiRegion.title(),
                    _ => Arch::Full.title(),
                }
            ));
        }
        s.push_str("</svg>\n");
        s
    }

    /// Writes report.md, report.json and latency.svg to `dir`.
    pub fn write(&self, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let files = [
            (dir.join("report.md"), self.markdown()),
            (
                dir.join("report.json"),
                serde_json::to_string_pretty(self).map_err(std::io::Error::other)?,
            ),
            (dir.join("latency.svg"), self.svg()),
        ];
        for (p, text) in &files {
            std::fs::write(p, text)?;
        }
        Ok(files.into_iter().map(|(p, _)| p).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_chaos::DataChaosReport;

    fn report(scenario: &str, rto: Option<f64>, lost: u64, span: f64) -> DataChaosReport {
        serde_json::from_value(serde_json::json!({
            "scenario": scenario, "primary_before": "db-a", "frozen": ["db-a"],
            "primary_after": "db-b", "seconds": 40.0, "outage_seconds": 20.0,
            "acknowledged": 100, "by_location": [], "lost": lost, "lost_span_seconds": span,
            "rto_seconds": rto, "promoted_after_seconds": 7.0, "lag_at_fault_seconds": 0.0,
            "lag_at_fault_bytes": 0, "direct_writes": [], "two_writers": false,
            "old_primary_writes_after_promotion": 0,
            "old_primary_rejoined_after_seconds": 3.0, "errors": []
        }))
        .unwrap()
    }

    #[test]
    fn rpo_and_rto_are_judged_by_the_last_chaos_runs() {
        let unmeasured = data_verdicts(&[]);
        assert!(unmeasured.iter().all(|v| v.met.is_none()));
        assert!(unmeasured[0]
            .measured
            .contains("meridian chaos kill-db-primary"));

        let good = data_verdicts(&[
            report("kill-db-primary", Some(8.0), 0, 0.0),
            report("kill-region", Some(19.6), 3, 0.4),
        ]);
        assert_eq!(good[0].met, Some(true));
        assert!(
            good[0].measured.contains("kill-region 19.6 s"),
            "{}",
            good[0].measured
        );
        assert_eq!(good[1].met, Some(true));
        assert!(
            good[1].measured.contains("3 of 100"),
            "{}",
            good[1].measured
        );

        let bad = data_verdicts(&[report("kill-region", None, 500, 75.0)]);
        assert_eq!((bad[0].met, bad[1].met), (Some(false), Some(false)));
    }
}
