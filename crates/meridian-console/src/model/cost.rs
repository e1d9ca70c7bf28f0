//! Cost: what the traffic and instances would cost at the config's prices, accumulated
//! since the console started and projected from the last minute.

use super::views::{PopView, RegionView};
use crate::series::Store;
use meridian_config::Config;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Default)]
pub struct CostLine {
    pub place: String,
    /// `region` or `pop`.
    pub kind: &'static str,
    pub requests: f64,
    pub gb_out: f64,
    pub instance_hours: f64,
    /// Dollars since the console started.
    pub total: f64,
    /// Dollars per hour at the last minute's rate.
    pub per_hour: f64,
    /// `per_hour` over a 730-hour month.
    pub per_month: f64,
}

#[derive(Default, Clone, Copy)]
struct CostAcc {
    requests: f64,
    bytes_out: f64,
    instance_seconds: f64,
}

/// Traffic and instance time so far, by place.
#[derive(Default)]
pub(super) struct Cost {
    by_place: BTreeMap<String, CostAcc>,
}

impl Cost {
    pub(super) fn account(
        &mut self,
        config: &Config,
        store: &Store,
        sec: u64,
        regions: &[RegionView],
        pops: &[PopView],
    ) {
        let dt = config.console.scrape_interval.as_secs_f64();
        for r in regions {
            let p = format!("region.{}", r.name);
            let acc = CostAcc {
                requests: store.sum_last(&format!("{p}.requests"), sec),
                bytes_out: store.sum_last(&format!("{p}.bytes_out"), sec),
                instance_seconds: store.sum_last(&format!("{p}.instances"), sec) * dt,
            };
            let e = self.by_place.entry(r.name.clone()).or_default();
            e.requests += acc.requests;
            e.bytes_out += acc.bytes_out;
            e.instance_seconds += acc.instance_seconds;
        }
        for pop in pops {
            let p = format!("pop.{}", pop.name);
            let requests = store.sum_last(&format!("{p}.requests"), sec);
            let bytes = store.sum_last(&format!("{p}.bytes_out"), sec);
            let e = self.by_place.entry(pop.name.clone()).or_default();
            e.requests += requests;
            e.bytes_out += bytes;
        }
    }

    pub(super) fn lines(&self, config: &Config, store: &Store, sec: u64) -> Vec<CostLine> {
        const GB: f64 = 1e9;
        let places = config
            .regions
            .iter()
            .map(|r| (r.name.clone(), "region"))
            .chain(config.edges.iter().map(|p| (p.name.clone(), "pop")));
        let minute = 60;
        places
            .map(|(name, kind)| {
                let price = config.console.prices.of(&name);
                let acc = self.by_place.get(&name).copied().unwrap_or_default();
                let money = |requests: f64, bytes: f64, hours: f64| {
                    requests / 1e6 * price.requests_per_million
                        + bytes / GB * price.data_out_per_gb
                        + hours * price.instance_hour
                };
                let prefix = if kind == "region" { "region" } else { "pop" };
                let p = format!("{prefix}.{name}");
                let r = store.sum_window(&format!("{p}.requests"), sec, minute);
                let b = store.sum_window(&format!("{p}.bytes_out"), sec, minute);
                let instances = store
                    .get(&format!("{p}.instances"))
                    .and_then(|s| s.window(sec, 1)[0])
                    .unwrap_or(0.0);
                let per_hour = money(r * 60.0, b * 60.0, instances);
                CostLine {
                    place: name,
                    kind,
                    requests: acc.requests,
                    gb_out: acc.bytes_out / GB,
                    instance_hours: acc.instance_seconds / 3600.0,
                    total: money(acc.requests, acc.bytes_out, acc.instance_seconds / 3600.0),
                    per_hour,
                    per_month: per_hour * 730.0,
                }
            })
            .collect()
    }
}
