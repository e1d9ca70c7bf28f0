//! The global DNS: Meridian's Route 53.
//!
//! Every `dns` node is authoritative for the deployment's zone and answers each query with
//! the best healthy answer for that client: the routing policy of the record set decides
//! (simple, weighted, latency, failover, geolocation, geoproximity, multivalue, IP-based),
//! the health engine says which candidates are alive, and the client's location comes from
//! EDNS Client Subnet or the source address.

mod batch;
mod cache;
mod client;
mod policy;
mod server;
mod zone;
pub mod zonefile;

pub use client::{ClientInfo, GeoIpError, KnownLocation, Locator};
pub use policy::{Candidate, Decision};
pub use server::{Dns, DnsOptions, OptionsError, Resolution, RunError};
pub use zone::{Zone, ZoneError};

/// Runs a DNS node until `shutdown` resolves.
pub async fn run(
    opts: DnsOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), server::RunError> {
    server::run(opts, shutdown).await
}
