//! Who is asking: the client's address (from EDNS Client Subnet or the packet's source)
//! and the configured location it belongs to.

use meridian_config::{Cidr, Config, Coordinates};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;

/// Where a client is: a configured client location, or what a GeoIP database says.
#[derive(Debug, Clone, Serialize)]
pub struct KnownLocation {
    pub name: String,
    pub network: Cidr,
    /// None when the source knows the country but not the coordinates.
    pub location: Option<Coordinates>,
    pub country: Option<String>,
    pub continent: Option<String>,
}

/// Maps addresses to client locations: the config's networks first, then the GeoIP
/// database when one is given.
#[derive(Clone, Default)]
pub struct Locator {
    pub locations: Vec<KnownLocation>,
    geoip: Option<Arc<maxminddb::Reader<Vec<u8>>>>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("locations", &self.locations)
            .field("geoip", &self.geoip.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {source}")]
pub struct GeoIpError {
    pub path: String,
    #[source]
    pub source: maxminddb::MaxMindDbError,
}

/// The part of a GeoIP2 Country or City record that routing uses.
#[derive(Debug, Default, Deserialize)]
struct GeoRecord<'a> {
    #[serde(borrow, default)]
    country: Option<Iso<'a>>,
    #[serde(borrow, default)]
    continent: Option<ContinentCode<'a>>,
    #[serde(default)]
    location: Option<GeoPoint>,
}

#[derive(Debug, Default, Deserialize)]
struct Iso<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct ContinentCode<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
struct GeoPoint {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl Locator {
    /// Also opens the GeoIP database the config names, if any.
    pub fn with_geoip(cfg: &Config) -> Result<Self, GeoIpError> {
        let mut l = Self::from_config(cfg);
        if let Some(path) = &cfg.dns.geoip_database {
            let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError {
                path: path.display().to_string(),
                source,
            })?;
            l.geoip = Some(Arc::new(reader));
        }
        Ok(l)
    }

    /// The config's client locations only.
    pub fn from_config(cfg: &Config) -> Self {
        Locator {
            geoip: None,
            locations: cfg
                .client_locations
                .iter()
                .filter_map(|c| {
                    Some(KnownLocation {
                        name: c.name.clone(),
                        network: cfg.client_source(&c.name)?,
                        location: Some(c.location),
                        country: c.country.clone(),
                        continent: c.continent.clone(),
                    })
                })
                .collect(),
        }
    }

    /// Which configured location holds `ip`, as the answer cache keys it: `Some(None)` for
    /// none, and `None` when a GeoIP database would have to be asked (not cached).
    pub(crate) fn cache_key(&self, ip: IpAddr) -> Option<Option<u16>> {
        let found = self
            .locations
            .iter()
            .enumerate()
            .filter(|(_, l)| l.network.contains(ip))
            .max_by_key(|(_, l)| l.network.prefix)
            .map(|(i, _)| i as u16);
        match (found, &self.geoip) {
            (Some(i), _) => Some(Some(i)),
            (None, None) => Some(None),
            (None, Some(_)) => None,
        }
    }

    /// The most specific configured location whose network holds `ip`, else the GeoIP
    /// database's answer.
    pub fn locate(&self, ip: IpAddr) -> Option<KnownLocation> {
        let configured = self
            .locations
            .iter()
            .filter(|l| l.network.contains(ip))
            .max_by_key(|l| l.network.prefix);
        if let Some(l) = configured {
            return Some(l.clone());
        }
        let reader = self.geoip.as_ref()?;
        let result = reader.lookup(ip).ok()?;
        let record: GeoRecord = result.decode().ok()??;
        let network = result.network().ok()?;
        let country = record.country.and_then(|c| c.iso_code).map(str::to_owned);
        let continent = record.continent.and_then(|c| c.code).map(str::to_owned);
        let location = record.location.and_then(|p| {
            Some(Coordinates {
                lat: p.latitude?,
                lon: p.longitude?,
            })
        });
        if country.is_none() && continent.is_none() && location.is_none() {
            return None;
        }
        Some(KnownLocation {
            name: format!(
                "geoip:{}",
                country.as_deref().or(continent.as_deref()).unwrap_or("?")
            ),
            network: Cidr {
                addr: network.network(),
                prefix: network.prefix(),
            },
            location,
            country,
            continent,
        })
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
