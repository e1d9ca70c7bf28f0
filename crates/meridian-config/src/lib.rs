//! The Meridian deployment model.
//!
//! One `meridian.toml` describes a whole deployment. This crate reads it with errors that
//! name file, line, column, key, the problem and the fix (every problem at once), fills in
//! defaults, and derives the node topology every other crate works from. Each section has
//! its own file holding its types, defaults, reader and checks; `load` puts them together.

mod autoscaling;
mod cache_tier;
mod client_location;
mod common;
mod console;
mod database;
mod db_records;
mod deployment;
pub mod diff;
mod distribution;
mod dns;
mod edge;
mod error;
pub mod geo;
mod health_check;
mod host;
mod host_placement;
mod listener_rule;
mod load;
mod load_balancer;
mod network;
mod node;
mod placement;
mod raw;
mod read;
mod region;
mod regional_cache;
mod replacement;
mod scaling_homes;
mod security;
mod serde_duration;
mod service;
mod service_deployment;
mod simulation;
pub mod state;
mod supervisor;
mod target_group;
mod topology;
pub mod units;

pub use autoscaling::{
    AutoScaling, ScalingMetric, MAX_INSTANCES_PER_REGION, SCALE_IN_DATAPOINTS, SCALE_OUT_DATAPOINTS,
};
pub use cache_tier::*;
pub use client_location::ClientLocation;
pub use common::is_dns_name;
pub use console::*;
pub use database::*;
pub use db_records::{DB_READER_RECORD, DB_WRITER_RECORD};
pub use deployment::Deployment;
pub use distribution::*;
pub use dns::{
    AliasTarget, AllUnhealthy, Answer, Dns, FailoverRole, GeoMatch, LatencyOverride, Policy,
    RecordKind, RecordSet,
};
pub use edge::Pop;
pub use error::{ConfigError, ConfigErrors};
pub use geo::{Coordinates, Place, Prior, RoundTripPrior};
pub use health_check::{
    CheckProtocol, HealthCheck, StatusMatcher, GRPC_DEFAULT_CODES, GRPC_DEFAULT_PATH,
};
pub use host::{Host, DEFAULT_AGENT_PORT};
pub use listener_rule::{
    Action, Conditions, HeaderCondition, ListenerRule, Redirect, WeightedGroup,
};
pub use load::{Config, LoadError, DEFAULT_CONFIG, DEFAULT_ORIGIN};
pub use load_balancer::{LoadBalancer, LB_TLS_PORT_OFFSET};
pub use network::{Cidr, Network};
pub use node::{NodeSpec, Role};
pub use placement::{Placement, RELAY_PORT_OFFSET};
pub use region::Region;
pub use regional_cache::regional_cache_name;
pub use security::{OriginProtocol, SecretSource, Secrets};
pub use service::{Service, ServiceRuntime};
pub use service_deployment::{valid_version, DeploymentConfiguration};
pub use simulation::{PlaceLatency, Simulation};
pub use supervisor::Supervisor;
pub use target_group::{Algorithm, ProtocolVersion, Stickiness, TargetGroup, DEFAULT_TARGET_GROUP};
pub use units::ByteSize;
