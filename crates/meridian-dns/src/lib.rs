//! The global DNS: Meridian's Route 53.
//!
//! Every `dns` node is authoritative for the deployment's zone and answers each query with
//! the best healthy answer for that client: the routing policy of the record set decides
//! (simple, weighted, latency, failover, geolocation, geoproximity, multivalue, IP-based),
//! the health engine says which candidates are alive, and the client's location comes from
//! EDNS Client Subnet or the source address.

mod admin;
mod batch;
mod cache;
mod client;
mod explain;
mod health_feed;
mod measurement_feed;
mod measurements;
mod node;
mod options;
mod policy;
mod server;
mod tcp;
mod zone;
pub mod zonefile;

pub use client::{ClientInfo, GeoIpError, KnownLocation, Locator};
pub use measurements::{sources as measurement_sources, MeasurementSource};
pub use node::RunError;
pub use options::{DnsOptions, OptionsError};
pub use policy::{Candidate, Decision};
pub use server::{Dns, Resolution};
pub use zone::{Zone, ZoneError};

/// Runs a DNS node until `shutdown` resolves.
pub async fn run(
    opts: DnsOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    node::run(opts, shutdown).await
}
