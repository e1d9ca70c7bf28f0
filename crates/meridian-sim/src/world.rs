//! The places of a deployment (regions, PoPs, client locations) and the round trip between
//! any two: the latency model of DESIGN.md, with the config's measured overrides.

use meridian_config::{Config, Coordinates};
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlaceKind {
    Region,
    Pop,
    Client,
}

#[derive(Debug, Clone, Serialize)]
pub struct Place {
    pub name: String,
    pub kind: PlaceKind,
    pub location: Coordinates,
}

impl Place {
    /// How the config's overrides name it: a region by name, `pop:<name>`, `client:<name>`.
    pub fn id(&self) -> String {
        match self.kind {
            PlaceKind::Region => self.name.clone(),
            PlaceKind::Pop => format!("pop:{}", self.name),
            PlaceKind::Client => format!("client:{}", self.name),
        }
    }

    fn named(&self, s: &str) -> bool {
        s == self.id() || s == self.name
    }
}

/// Light in fibre covers about 200 km per millisecond.
pub const FIBRE_KM_PER_MS: f64 = 200.0;

/// Round trip for a distance: there and back over fibre, inflated, plus access.
pub fn rtt_ms(distance_km: f64, inflation: f64, access_ms: f64) -> f64 {
    2.0 * distance_km / FIBRE_KM_PER_MS * inflation + access_ms
}

/// The model as the prior production nodes rank by until they have measured (when
/// `[simulation] prior` is on): the same numbers the WAN relays delay by.
pub fn prior(cfg: &Config) -> meridian_config::Prior {
    cfg.simulation.prior.then(|| {
        std::sync::Arc::new(World::new(cfg)) as std::sync::Arc<dyn meridian_config::RoundTripPrior>
    })
}

impl meridian_config::RoundTripPrior for World {
    fn round_trip(
        &self,
        from: meridian_config::Place<'_>,
        to: meridian_config::Place<'_>,
    ) -> Option<Duration> {
        let find = |p: meridian_config::Place<'_>| match p {
            meridian_config::Place::Region(n) => self.place(PlaceKind::Region, n).cloned(),
            meridian_config::Place::Pop(n) => self.place(PlaceKind::Pop, n).cloned(),
            meridian_config::Place::Client(n) => self.place(PlaceKind::Client, n).cloned(),
            // An unnamed point matches no override: the model alone.
            meridian_config::Place::At(location) => Some(Place {
                name: String::new(),
                kind: PlaceKind::Client,
                location,
            }),
        };
        Some(self.rtt(&find(from)?, &find(to)?))
    }
}

/// Every place of a deployment and the model that spaces them.
#[derive(Debug, Clone)]
pub struct World {
    pub places: Vec<Place>,
    inflation: f64,
    access: Duration,
    overrides: Vec<(String, String, Duration)>,
    cfg: Config,
}

impl World {
    pub fn new(cfg: &Config) -> World {
        let mut places: Vec<Place> = cfg
            .regions
            .iter()
            .map(|r| Place {
                name: r.name.clone(),
                kind: PlaceKind::Region,
                location: r.location,
            })
            .collect();
        places.extend(cfg.edges.iter().map(|p| Place {
            name: p.name.clone(),
            kind: PlaceKind::Pop,
            location: p.location,
        }));
        places.extend(cfg.client_locations.iter().map(|c| Place {
            name: c.name.clone(),
            kind: PlaceKind::Client,
            location: c.location,
        }));
        let mut overrides: Vec<(String, String, Duration)> = cfg
            .simulation
            .latency
            .iter()
            .map(|l| (l.from.clone(), l.to.clone(), l.rtt))
            .collect();
        // The DNS's measured client-to-region table is a measurement of the same world.
        overrides.extend(
            cfg.dns
                .latency_overrides
                .iter()
                .map(|l| (format!("client:{}", l.client), l.region.clone(), l.rtt)),
        );
        World {
            places,
            inflation: cfg.simulation.inflation,
            access: cfg.simulation.access,
            overrides,
            cfg: cfg.clone(),
        }
    }

    pub fn place(&self, kind: PlaceKind, name: &str) -> Option<&Place> {
        self.places
            .iter()
            .find(|p| p.kind == kind && p.name == name)
    }

    /// The round trip between two places: an override when the config has one (either
    /// direction), else great circle over fibre times the inflation, plus the access cost.
    pub fn rtt(&self, a: &Place, b: &Place) -> Duration {
        if a.kind == b.kind && a.name == b.name {
            return Duration::ZERO;
        }
        for (from, to, rtt) in &self.overrides {
            if (a.named(from) && b.named(to)) || (b.named(from) && a.named(to)) {
                return *rtt;
            }
        }
        let km = a.location.distance_km(&b.location);
        Duration::from_secs_f64(rtt_ms(km, self.inflation, self.access.as_secs_f64() * 1e3) / 1e3)
    }

    /// The physical limit: light in fibre along the great circle, there and back.
    pub fn fibre_rtt(&self, a: &Place, b: &Place) -> Duration {
        let km = a.location.distance_km(&b.location);
        Duration::from_secs_f64(rtt_ms(km, 1.0, 0.0) / 1e3)
    }

    /// The nearest place of `kind` to `from` by modelled round trip.
    pub fn nearest(&self, from: &Place, kind: PlaceKind) -> Option<&Place> {
        self.places
            .iter()
            .filter(|p| p.kind == kind)
            .min_by_key(|p| self.rtt(from, p))
    }

    /// Where a connection from `ip` comes from: a client location's network, a PoP's
    /// address, or a region's block of addresses.
    pub fn place_of_ip(&self, ip: IpAddr) -> Option<&Place> {
        let cfg = &self.cfg;
        for c in &cfg.client_locations {
            if cfg
                .client_source(&c.name)
                .is_some_and(|net| net.contains(ip))
            {
                return self.place(PlaceKind::Client, &c.name);
            }
        }
        for p in &cfg.edges {
            if cfg
                .pop_addresses(&p.name)
                .is_some_and(|(a, _)| a.ip() == ip)
            {
                return self.place(PlaceKind::Pop, &p.name);
            }
        }
        let IpAddr::V4(v4) = ip else { return None };
        let o = v4.octets();
        if [o[0], o[1]] != cfg.network.subnet || o[2] == 0 {
            return None;
        }
        let region = cfg.regions.get(usize::from(o[2]) - 1)?;
        self.place(PlaceKind::Region, &region.name)
    }
}

/// `meridian sim latency`: modelled round trips from every client location to every region
/// and PoP, with the fibre limit.
#[derive(Debug, Serialize)]
pub struct Matrix {
    pub inflation: f64,
    pub access_ms: f64,
    pub columns: Vec<Place>,
    pub rows: Vec<MatrixRow>,
}

#[derive(Debug, Serialize)]
pub struct MatrixRow {
    pub client: String,
    /// Round trips in milliseconds, one per column.
    pub rtt_ms: Vec<f64>,
    pub fibre_ms: Vec<f64>,
}

impl World {
    pub fn matrix(&self) -> Matrix {
        let columns: Vec<Place> = self
            .places
            .iter()
            .filter(|p| p.kind != PlaceKind::Client)
            .cloned()
            .collect();
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        let rows = self
            .places
            .iter()
            .filter(|p| p.kind == PlaceKind::Client)
            .map(|c| MatrixRow {
                client: c.name.clone(),
                rtt_ms: columns.iter().map(|p| ms(self.rtt(c, p))).collect(),
                fibre_ms: columns.iter().map(|p| ms(self.fibre_rtt(c, p))).collect(),
            })
            .collect();
        Matrix {
            inflation: self.inflation,
            access_ms: self.access.as_secs_f64() * 1e3,
            columns,
            rows,
        }
    }
}

impl std::fmt::Display for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "Modelled round trip in ms (great circle over fibre x {}, + {} ms access); regions, then PoPs",
            self.inflation, self.access_ms
        )?;
        write!(f, "{:<15}", "from \\ to")?;
        for c in &self.columns {
            let label = match c.kind {
                PlaceKind::Pop => format!("pop:{}", c.name),
                _ => c.name.clone(),
            };
            write!(f, " {label:>15}")?;
        }
        writeln!(f)?;
        for r in &self.rows {
            write!(f, "{:<15}", r.client)?;
            for v in &r.rtt_ms {
                write!(f, " {v:>15.1}")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "\nThe physical limit (fibre alone, no inflation or access) is in `--json` as fibre_ms."
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_world_distances_and_overrides() {
        let cfg = Config::embedded_default();
        let w = World::new(&cfg);
        let ny = w.place(PlaceKind::Client, "new-york").unwrap();
        let use1 = w.place(PlaceKind::Region, "us-east-1").unwrap();
        let apse1 = w.place(PlaceKind::Region, "ap-southeast-1").unwrap();
        assert!(
            w.rtt(ny, use1) < Duration::from_millis(15),
            "{:?}",
            w.rtt(ny, use1)
        );
        assert!(
            w.rtt(ny, apse1) > Duration::from_millis(150),
            "{:?}",
            w.rtt(ny, apse1)
        );
        assert!(w.fibre_rtt(ny, apse1) < w.rtt(ny, apse1));
        assert_eq!(w.rtt(ny, use1), w.rtt(use1, ny), "symmetric");
        let london = w.place(PlaceKind::Client, "london").unwrap();
        assert_eq!(
            w.nearest(london, PlaceKind::Region).unwrap().name,
            "eu-west-1"
        );
        assert_eq!(w.nearest(london, PlaceKind::Pop).unwrap().name, "london");
        // Addresses place connections.
        let ip: IpAddr = "127.10.203.77".parse().unwrap();
        assert_eq!(w.place_of_ip(ip).unwrap().id(), "client:london");
        let ip: IpAddr = "127.10.101.1".parse().unwrap();
        assert_eq!(w.place_of_ip(ip).unwrap().id(), "pop:london");
        let ip: IpAddr = "127.10.2.1".parse().unwrap();
        assert_eq!(w.place_of_ip(ip).unwrap().id(), "eu-west-1");
        assert!(w.place_of_ip("127.0.0.1".parse().unwrap()).is_none());

        let text = format!(
            "{}\n[[simulation.latency]]\nfrom = \"client:new-york\"\nto = \"us-east-1\"\nrtt = \"42ms\"\n",
            meridian_config::DEFAULT_CONFIG
        );
        let cfg = Config::parse(&text, "t.toml").unwrap();
        let w = World::new(&cfg);
        let ny = w.place(PlaceKind::Client, "new-york").unwrap();
        let use1 = w.place(PlaceKind::Region, "us-east-1").unwrap();
        assert_eq!(
            w.rtt(use1, ny),
            Duration::from_millis(42),
            "an override in either direction"
        );
    }

    #[test]
    fn the_prior_is_the_wan_model_and_can_be_turned_off() {
        use meridian_config::Place as At;
        let text = format!(
            "{}\n[[simulation.latency]]\nfrom = \"pop:london\"\nto = \"us-east-1\"\nrtt = \"42ms\"\n",
            meridian_config::DEFAULT_CONFIG
        );
        let cfg = Config::parse(&text, "t.toml").unwrap();
        let w = World::new(&cfg);
        let prior = prior(&cfg).expect("on by default");
        let lon = w.place(PlaceKind::Pop, "london").unwrap();
        let euw1 = w.place(PlaceKind::Region, "eu-west-1").unwrap();
        assert_eq!(
            prior.round_trip(At::Pop("london"), At::Region("eu-west-1")),
            Some(w.rtt(lon, euw1)),
            "the same numbers the WAN delays by"
        );
        assert_eq!(
            prior.round_trip(At::Pop("london"), At::Region("us-east-1")),
            Some(Duration::from_millis(42)),
            "with the config's overrides"
        );
        let km = lon.location.distance_km(&euw1.location);
        let by_hand = 2.0 * km / FIBRE_KM_PER_MS * 1.5 + 2.0;
        let got = prior
            .round_trip(At::At(lon.location), At::Region("eu-west-1"))
            .unwrap();
        assert!((got.as_secs_f64() * 1e3 - by_hand).abs() < 1e-6, "{got:?}");
        assert_eq!(
            prior.round_trip(At::Pop("atlantis"), At::Region("eu-west-1")),
            None
        );

        let off = Config::parse(
            &format!(
                "{}\n",
                meridian_config::DEFAULT_CONFIG.replace("\nprior = true ", "\nprior = false ")
            ),
            "t.toml",
        )
        .unwrap();
        assert!(super::prior(&off).is_none());
    }
}
