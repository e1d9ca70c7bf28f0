//! `[deployment]`: the deployment's name and the DNS zone it answers for.

use crate::common::{check_identifier, is_dns_name};
use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub name: String,
    /// The DNS zone the deployment answers for, without a trailing dot.
    pub zone: String,
}

pub(crate) fn read_deployment(t: &Table, d: &mut Diagnostics) -> Option<Deployment> {
    let name = t.req_str(d, "name", "add `name = \"my-app\"`");
    let zone = t.req_str(
        d,
        "zone",
        "add `zone = \"example.com\"`, the DNS zone you serve",
    );
    if let (Some(z), Some(f)) = (&zone, t.get("zone")) {
        if !is_dns_name(z.trim_end_matches('.')) {
            d.error(
                f.span,
                &f.key,
                format!("`{z}` is not a valid DNS zone name"),
                "use letters, digits and hyphens in dot-separated labels, such as \"example.com\"",
            );
        }
    }
    if let (Some(n), Some(f)) = (&name, t.get("name")) {
        check_identifier(d, n, &f.key, f.span.clone());
    }
    t.finish(d);
    Some(Deployment {
        name: name?,
        zone: zone?.trim_end_matches('.').to_ascii_lowercase(),
    })
}
