//! Where places are, and what a node may be told about round trips between them.
//!
//! Places are written as `location = { lat, lon }`, read here; the great-circle distance
//! between two is geography, not a latency. Turning distance into round-trip time is the
//! latency model's job, and the model lives in `meridian-sim` (used by the WAN, and handed
//! to nodes only as an optional [`RoundTripPrior`]).

use crate::error::Diagnostics;
use crate::read::Table;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Coordinates {
    pub lat: f64,
    pub lon: f64,
}

pub(crate) fn read_location(t: &Table, d: &mut Diagnostics) -> Option<Coordinates> {
    let Some(loc) = t.table(d, "location") else {
        if !t.has("location") {
            t.missing(
                d,
                "location",
                "add `location = { lat = 38.9, lon = -77.4 }`",
            );
        }
        return None;
    };
    let lat = loc.float(d, "lat");
    let lon = loc.float(d, "lon");
    if !loc.has("lat") {
        loc.missing(d, "lat", "add the latitude in degrees, -90 to 90");
    }
    if !loc.has("lon") {
        loc.missing(d, "lon", "add the longitude in degrees, -180 to 180");
    }
    for (key, value, limit) in [("lat", lat, 90.0), ("lon", lon, 180.0)] {
        if let (Some(v), Some(f)) = (value, loc.get(key)) {
            if !(-limit..=limit).contains(&v) {
                d.error(
                    f.span,
                    &f.key,
                    format!("`{}` is {v}, outside -{limit} to {limit} degrees", f.key),
                    "use decimal degrees; south and west are negative",
                );
            }
        }
    }
    loc.finish(d);
    Some(Coordinates {
        lat: lat?,
        lon: lon?,
    })
}

const EARTH_RADIUS_KM: f64 = 6371.0;

impl Coordinates {
    /// Great-circle distance (haversine).
    pub fn distance_km(&self, other: &Coordinates) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = la2 - la1;
        let dlon = (other.lon - self.lon).to_radians();
        let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
    }
}

/// A place of the deployment that a round trip can start or end at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place<'a> {
    Region(&'a str),
    Pop(&'a str),
    Client(&'a str),
    /// A point that is no named place (a client located by a GeoIP database, say).
    At(Coordinates),
}

/// What a round trip between two places is believed to be before anything is measured.
/// Production code ranks by measurements; a node may be handed a prior to rank by until it
/// has them. Meridian's one latency model (in `meridian-sim`) is such a prior, so nodes
/// never compute distances into latencies themselves.
pub trait RoundTripPrior: Send + Sync + std::fmt::Debug {
    /// None when either place is unknown to the prior.
    fn round_trip(&self, from: Place<'_>, to: Place<'_>) -> Option<std::time::Duration>;
}

/// A prior to hand a node, or none (rank by measurements and configured values only).
pub type Prior = Option<std::sync::Arc<dyn RoundTripPrior>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        let nyc = Coordinates {
            lat: 40.71,
            lon: -74.01,
        };
        let london = Coordinates {
            lat: 51.51,
            lon: -0.13,
        };
        let d = nyc.distance_km(&london);
        assert!((d - 5570.0).abs() < 30.0, "{d}");
        assert_eq!(nyc.distance_km(&nyc), 0.0);
    }
}
