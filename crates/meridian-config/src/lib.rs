//! The Meridian deployment model.
//!
//! One `meridian.toml` describes a whole deployment. This crate reads it with errors that
//! name file, line, column, key, the problem and the fix (every problem at once), fills in
//! defaults, and derives the node topology every other crate works from.

mod cache_tier;
mod console;
mod database;
mod db_records;
mod distribution;
mod error;
pub mod geo;
mod load;
mod model;
mod raw;
mod read;
mod security;
mod serde_duration;
pub mod state;
mod topology;
pub mod units;

pub use cache_tier::*;
pub use console::*;
pub use database::*;
pub use db_records::{DB_READER_RECORD, DB_WRITER_RECORD};
pub use distribution::*;
pub use error::{ConfigError, ConfigErrors};
pub use load::{is_dns_name, LoadError, DEFAULT_CONFIG, DEFAULT_ORIGIN};
pub use model::*;
pub use security::{OriginProtocol, SecretSource, Secrets, LB_TLS_PORT_OFFSET};
pub use topology::{NodeSpec, Role};
pub use units::ByteSize;
