//! Deployment-wide totals: sums of the places' rates, latency quantiles over every PoP's
//! and every region's merged histograms.

use super::scrape::Scrape;
use super::views::{ms, DnsView, Global, PopView, RegionView};
use crate::reading::{merge_buckets, quantile};
use crate::series::Store;

pub(super) fn global(
    scrape: &Scrape,
    store: &mut Store,
    sec: u64,
    regions: &[RegionView],
    pops: &[PopView],
    dns: &[DnsView],
) -> Global {
    let readings = scrape.readings;
    let sum = |xs: &mut dyn Iterator<Item = Option<f64>>| -> Option<f64> {
        xs.fold(None, |acc, x| match (acc, x) {
            (None, x) => x,
            (a, None) => a,
            (Some(a), Some(b)) => Some(a + b),
        })
    };
    let mut g = Global {
        edge_rps: sum(&mut pops.iter().map(|p| p.rps)),
        region_rps: sum(&mut regions.iter().map(|r| r.rps)),
        err5xx_rps: sum(&mut pops
            .iter()
            .map(|p| p.err5xx_rps)
            .chain(regions.iter().map(|r| r.err5xx_rps))),
        bytes_out_rate: sum(&mut pops.iter().map(|p| p.bytes_out_rate)),
        bytes_origin_rate: sum(&mut pops.iter().map(|p| p.bytes_origin_rate)),
        dns_qps: sum(&mut dns.iter().map(|d| d.qps)),
        ..Default::default()
    };
    let mut edge_b = Vec::new();
    let mut region_b = Vec::new();
    let (mut hits, mut lookups, mut e4) = (0.0, 0.0, None::<f64>);
    for (t, r) in scrape.targets.iter().zip(readings) {
        let Some(r) = r else { continue };
        match t.role {
            // A regional edge cache (`edge-rec-<region>`) serves PoPs, not viewers: its
            // requests are already counted where viewers made them.
            "edge" if t.name.starts_with("edge-rec-") => {}
            "edge" => {
                merge_buckets(
                    &mut edge_b,
                    &r.buckets("meridian_edge_request_duration_seconds"),
                );
                hits += store.sum_last(
                    &format!("pop.{}.hits", t.name.trim_start_matches("edge-")),
                    sec,
                );
                lookups += store.sum_last(
                    &format!("pop.{}.lookups", t.name.trim_start_matches("edge-")),
                    sec,
                );
                if let Some(x) = r.rate("meridian_edge_requests_total", |s| {
                    s.label("status_class") == Some("4xx")
                }) {
                    *e4.get_or_insert(0.0) += x;
                }
            }
            "lb" => {
                merge_buckets(
                    &mut region_b,
                    &r.buckets("meridian_lb_request_duration_seconds"),
                );
            }
            _ => {}
        }
    }
    g.err4xx_rps = sum(&mut std::iter::once(e4).chain(regions.iter().map(|r| r.err4xx_rps)));
    g.hit_rate = (lookups > 0.0).then(|| hits / lookups);
    g.edge_p50_ms = ms(quantile(0.5, &edge_b));
    g.edge_p95_ms = ms(quantile(0.95, &edge_b));
    g.region_p50_ms = ms(quantile(0.5, &region_b));
    g.region_p95_ms = ms(quantile(0.95, &region_b));
    let total = g.edge_rps.unwrap_or(0.0) + g.region_rps.unwrap_or(0.0);
    if total > 0.0 {
        g.error_rate = Some(g.err5xx_rps.unwrap_or(0.0) / total);
    }
    for (name, v) in [
        ("edge_rps", g.edge_rps),
        ("region_rps", g.region_rps),
        ("err4xx_rps", g.err4xx_rps),
        ("err5xx_rps", g.err5xx_rps),
        ("error_rate", g.error_rate),
        ("hit_rate", g.hit_rate),
        ("edge_p50_ms", g.edge_p50_ms),
        ("edge_p95_ms", g.edge_p95_ms),
        ("region_p50_ms", g.region_p50_ms),
        ("region_p95_ms", g.region_p95_ms),
        ("bytes_out_rate", g.bytes_out_rate),
        ("bytes_origin_rate", g.bytes_origin_rate),
        ("dns_qps", g.dns_qps),
    ] {
        if let Some(v) = v {
            store.push(&format!("global.{name}"), sec, v);
        }
    }
    g
}
