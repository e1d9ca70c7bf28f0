//! Running Meridian nodes.
//!
//! [`run_node`] runs one node of a deployment in this process: what `meridian run` does on
//! a real machine. [`up`] runs a whole deployment on this machine as child processes, one
//! per node, each on its own loopback address: supervised, restarted with backoff when they
//! crash, described in `endpoints.json`, and all stopped on Ctrl-C or SIGTERM.

pub mod apply;
mod autoscale;
mod autoscale_metrics;
mod autoscale_policy;
mod autoscale_state;
pub mod bundle;
mod fleet;
mod instances;
pub mod kubernetes;
mod node;
mod reload;
mod restart;
mod rollout;
mod rollout_canary;
mod rollout_lb;
mod rollout_plan;
mod rollout_slots;
mod rollout_strategy;
mod rollout_twin_lb;
mod secrets;
mod state_dir;
mod table;
mod up;

pub use instances::read_version;
pub use node::{run_node, NodeError, EXIT_NEEDS_A_PERSON};
pub use reload::Source;
pub use rollout_plan::{plan, PlanError, Step};
pub use rollout_strategy::{Shift, Shifting, Strategy, StrategyError};
pub use state_dir::default_state_dir;
pub use up::{up, UpError, UpOptions};
