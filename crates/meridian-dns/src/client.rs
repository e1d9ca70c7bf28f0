//! Who is asking: the client's address (from EDNS Client Subnet or the packet's source)
//! and the configured location it belongs to.

use meridian_config::{Cidr, Config, Coordinates};
use serde::Serialize;
use std::net::IpAddr;

/// A configured client location with the network its clients send from.
#[derive(Debug, Clone, Serialize)]
pub struct KnownLocation {
    pub name: String,
    pub network: Cidr,
    pub location: Coordinates,
    pub country: Option<String>,
    pub continent: Option<String>,
}

/// Maps addresses to client locations.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    pub locations: Vec<KnownLocation>,
}

impl Locator {
    pub fn from_config(cfg: &Config) -> Self {
        Locator {
            locations: cfg
                .client_locations
                .iter()
                .filter_map(|c| {
                    Some(KnownLocation {
                        name: c.name.clone(),
                        network: cfg.client_source(&c.name)?,
                        location: c.location,
                        country: c.country.clone(),
                        continent: c.continent.clone(),
                    })
                })
                .collect(),
        }
    }

    /// The most specific location whose network holds `ip`.
    pub fn locate(&self, ip: IpAddr) -> Option<&KnownLocation> {
        self.locations
            .iter()
            .filter(|l| l.network.contains(ip))
            .max_by_key(|l| l.network.prefix)
    }
}

/// What the server knows about the client of one query.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// Where `ip` came from: "ecs" or "source".
    pub via: &'static str,
    /// The ECS source prefix (32 or 128 for the packet's source address).
    pub source_prefix: u8,
    pub location: Option<KnownLocation>,
}
