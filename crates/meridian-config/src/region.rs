//! `[[region]]`: where the application runs, and the checks that keep regions inside the
//! address space.

use crate::common::{check_identifier, read_named};
use crate::error::Diagnostics;
use crate::geo::{read_location, Coordinates};
use crate::read::Table;
use crate::service::Service;
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone, Serialize)]
pub struct Region {
    pub name: String,
    pub primary: bool,
    pub location: Coordinates,
    pub azs: Vec<String>,
    /// Overrides `service.instances_per_az` for this region.
    pub instances_per_az: Option<u32>,
}

pub(crate) fn read_regions(t: &Table, d: &mut Diagnostics) -> Option<Vec<Region>> {
    if !t.has("region") {
        t.missing(
            d,
            "region",
            "add at least one [[region]] with `name`, `location` and `azs`",
        );
        return None;
    }
    let regions = read_named(t, d, "region", |s, d, name| {
        let primary = s.bool(d, "primary").unwrap_or(false);
        let location = read_location(s, d);
        let mut azs = Vec::new();
        match s.str_list(d, "azs") {
            Some(list) if list.is_empty() => {
                let f = s.get("azs")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("region `{name}` has no availability zone"),
                    format!("list at least one, for example azs = [\"{name}a\", \"{name}b\"]"),
                );
            }
            Some(list) => {
                for az in list {
                    let key = format!("{}.azs", s.path);
                    check_identifier(d, az.get_ref(), &key, az.span());
                    azs.push(az.into_inner());
                }
            }
            None if !s.has("azs") => s.missing(
                d,
                "azs",
                &format!("list the region's availability zones, for example azs = [\"{name}a\", \"{name}b\"]"),
            ),
            None => {}
        }
        let instances_per_az = s.int(d, "instances_per_az", 0..=64).map(|n| n as u32);
        s.finish(d);
        Some(Region {
            name,
            primary,
            location: location?,
            azs,
            instances_per_az,
        })
    })?;
    let primaries: Vec<&Region> = regions.iter().filter(|r| r.primary).collect();
    if primaries.len() > 1 {
        let f = t.get("region")?;
        d.error(
            f.span,
            &f.key,
            format!(
                "{} regions are marked primary: {}",
                primaries.len(),
                primaries
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "mark exactly one region `primary = true`",
        );
    }
    if regions.len() > 200 {
        let f = t.get("region")?;
        d.error(
            f.span,
            &f.key,
            "more than 200 regions",
            "use at most 200 regions",
        );
    }
    let mut azs = HashSet::new();
    for r in &regions {
        for az in &r.azs {
            if !azs.insert(az.clone()) {
                let f = t.get("region")?;
                d.error(
                    f.span,
                    &f.key,
                    format!("availability zone `{az}` appears twice"),
                    "AZ names are global: give each its own name",
                );
            }
        }
    }
    Some(regions)
}

/// Address space is one /16: regions and instances per region must fit it.
pub(crate) fn check_totals(
    t: &Table,
    d: &mut Diagnostics,
    regions: Option<&[Region]>,
    service: Option<&Service>,
) {
    let (Some(regions), Some(service)) = (regions, service) else {
        return;
    };
    for (i, r) in regions.iter().enumerate() {
        let n = r.azs.len() as u32 * r.instances_per_az.unwrap_or(service.instances_per_az);
        if n > 200 {
            if let Some(f) = t.get("region") {
                d.error(
                    f.span,
                    &format!("region[{i}]"),
                    format!(
                        "region `{}` would run {n} instances; at most 200 fit its address block",
                        r.name
                    ),
                    "lower instances_per_az",
                );
            }
        }
    }
}
