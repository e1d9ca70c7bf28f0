//! `[service]`: what each application instance runs.

use crate::autoscaling::{read_autoscaling, AutoScaling};
use crate::error::Diagnostics;
use crate::read::Table;
use crate::service_deployment::{read_deployment, DeploymentConfiguration};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub runtime: ServiceRuntime,
    pub instances_per_az: u32,
    /// The version instances start with (`meridian rollout --service-version` changes the
    /// running one); the demo reports it, a command sees it as `MERIDIAN_SERVICE_VERSION`.
    pub version: String,
    /// How a rollout replaces instances (`[service.deployment]`).
    pub deployment: DeploymentConfiguration,
    /// Target tracking (`[service.autoscaling]`); None: every region keeps its configured
    /// instances.
    pub autoscaling: Option<AutoScaling>,
}

/// What an application instance runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ServiceRuntime {
    /// The built-in RichesReach API stand-in.
    Demo {
        #[serde(with = "crate::serde_duration")]
        processing_time: Duration,
    },
    /// A user's own server; `{host}` and `{port}` in the arguments are filled in.
    Command { argv: Vec<String> },
}

/// The service when the config has none: one built-in demo instance per AZ.
pub(crate) fn default_service() -> Service {
    Service {
        name: "app".to_owned(),
        runtime: ServiceRuntime::Demo {
            processing_time: Duration::ZERO,
        },
        instances_per_az: 1,
        version: "1".to_owned(),
        deployment: DeploymentConfiguration::default(),
        autoscaling: None,
    }
}

pub(crate) fn read_service(t: &Table, d: &mut Diagnostics) -> Option<Service> {
    let name = t.str(d, "name").unwrap_or_else(|| "app".to_owned());
    let runtime_name = t.str(d, "runtime").unwrap_or_else(|| "demo".to_owned());
    let processing_time = t.duration(d, "processing_time").unwrap_or(Duration::ZERO);
    let command = t.str_list(d, "command");
    let instances_per_az = t.int(d, "instances_per_az", 1..=64).unwrap_or(1) as u32;
    let version = match (t.get("version"), t.str(d, "version")) {
        (Some(f), Some(v)) if !crate::service_deployment::valid_version(&v) => {
            d.error(
                f.span,
                &f.key,
                format!("`{v}` is not a service version"),
                "use 1 to 64 letters, digits, `.`, `_` or `-`, such as \"2\" or \"2024.05.1\"",
            );
            "1".to_owned()
        }
        (_, v) => v.unwrap_or_else(|| "1".to_owned()),
    };
    let deployment = t
        .table(d, "deployment")
        .map(|dt| read_deployment(&dt, d))
        .unwrap_or_default();
    let autoscaling = t
        .table(d, "autoscaling")
        .and_then(|at| read_autoscaling(&at, d));
    let runtime = match runtime_name.as_str() {
        "demo" => Some(ServiceRuntime::Demo { processing_time }),
        "command" => match command {
            Some(argv) if !argv.is_empty() => Some(ServiceRuntime::Command {
                argv: argv.into_iter().map(|a| a.into_inner()).collect(),
            }),
            _ => {
                t.missing(
                    d,
                    "command",
                    "add `command = [\"my-server\", \"--listen\", \"{host}:{port}\"]`",
                );
                None
            }
        },
        other => {
            let f = t.get("runtime")?;
            d.error(
                f.span,
                &f.key,
                format!("`{other}` is not a service runtime"),
                "use \"demo\" (the built-in RichesReach API) or \"command\" (your own server)",
            );
            None
        }
    };
    t.finish(d);
    Some(Service {
        name,
        runtime: runtime?,
        instances_per_az,
        version,
        deployment,
        autoscaling,
    })
}
