//! The simulated planet: one machine standing in for the world.
//!
//! [`world`] places regions, PoPs and client locations on the globe and gives the round trip
//! between any two (great circle over fibre, inflated, plus access; overridable). [`relay`]
//! delays a TCP connection by a link's latency, with the [`delay_line`] thread writing
//! each chunk at its moment; the [`wan`] node puts such relays in front
//! of every region and PoP so traffic from each place pays its distance, while the nodes
//! themselves run unchanged.

mod admin;
pub mod chaos;
pub mod data_chaos;
pub mod delay_line;
pub mod global;
mod h3_client;
pub mod load;
pub mod overhead;
mod quic_relay;
pub mod relay;
mod signals;
pub mod tier_bench;
pub mod wan;
pub mod world;

pub use world::{Place, PlaceKind, World};
