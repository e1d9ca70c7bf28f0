//! `meridian validate`: a config's deployment, or every error in it.

use super::deployment::load_config;
use super::summary::summary;
use anyhow::Result;
use meridian_config::DEFAULT_CONFIG;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The config file; the embedded default when omitted.
    file: Option<PathBuf>,
    /// The config file, as the other commands take it (the same as FILE).
    #[arg(long, short, conflicts_with = "file")]
    config: Option<PathBuf>,
    /// Print the embedded default config and exit (a starting point for your own).
    #[arg(long, conflicts_with_all = ["file", "config"])]
    print_default: bool,
}

pub fn run(
    ValidateArgs {
        file,
        config,
        print_default,
    }: ValidateArgs,
) -> Result<ExitCode> {
    let file = file.or(config);
    if print_default {
        print!("{DEFAULT_CONFIG}");
        return Ok(ExitCode::SUCCESS);
    }
    match load_config(file.as_deref()) {
        Ok((cfg, _)) => {
            if !checks_beyond_parsing(&cfg) {
                return Ok(ExitCode::from(2));
            }
            print!("{}", summary(&cfg));
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

/// What a parsed config must also pass before a node can run it: its DNS records build a
/// zone and its edge functions compile. Prints every error; false when there is one.
pub(crate) fn checks_beyond_parsing(cfg: &meridian_config::Config) -> bool {
    // Record values are checked when the zone is built.
    if let Err(e) = meridian_dns::Zone::build(cfg) {
        eprintln!(
            "error: {e}\n  --> {}\n  = fix: correct the record in the [[dns.record]] list",
            cfg.origin
        );
        return false;
    }
    if let Err(errors) = check_functions(cfg) {
        eprintln!("{errors}");
        return false;
    }
    true
}

/// Compiles every edge function for each event it is associated with (for its runtime's
/// first event when it is not associated yet), and loads every key value store, as a PoP
/// would at start: a function that does not compile is a config error at its file, line
/// and column.
fn check_functions(cfg: &meridian_config::Config) -> Result<(), meridian_config::ConfigErrors> {
    use meridian_config::{ConfigError, FunctionEvent, FunctionRuntime};
    use meridian_edge::functions::{compile, load_store, FunctionError};
    let dist = &cfg.distribution;
    let mut errors = Vec::new();
    let at = |file: &str, line: usize, column: usize, key: String, problem: String, fix: &str| {
        let source_line = std::fs::read_to_string(file)
            .ok()
            .or_else(|| {
                (file == meridian_config::DEFAULT_ORIGIN).then(|| DEFAULT_CONFIG.to_owned())
            })
            .and_then(|t| t.lines().nth(line.saturating_sub(1)).map(str::to_owned))
            .unwrap_or_default();
        // QuickJS's column can run past the end of the line it names; point at its end then.
        let column = column.clamp(1, source_line.chars().count().max(1));
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            key,
            problem,
            fix: fix.to_owned(),
            source_line,
            width: 1,
        }
    };
    for f in &dist.functions {
        let mut events: Vec<FunctionEvent> = dist
            .behaviors
            .iter()
            .chain(std::iter::once(&dist.default_behavior))
            .flat_map(|b| &b.function_associations)
            .filter(|a| a.function == f.name)
            .map(|a| a.event_type)
            .collect();
        events.dedup();
        if events.is_empty() {
            events.push(match f.runtime {
                FunctionRuntime::CloudFrontJs2 => FunctionEvent::ViewerRequest,
                FunctionRuntime::LambdaEdge => FunctionEvent::OriginRequest,
            });
        }
        let key = format!("distribution.function.{}", f.name);
        for e in events {
            match compile(f, e) {
                Ok(_) => {}
                Err(FunctionError::Compile {
                    file,
                    line,
                    column,
                    message,
                    ..
                }) => {
                    errors.push(at(&file, line, column, key.clone(), message, "correct the code; `meridian functions test FILE --event EVENT.json` runs it on an event"));
                    break;
                }
                Err(other) => {
                    errors.push(at(
                        &cfg.origin,
                        1,
                        1,
                        key.clone(),
                        other.to_string(),
                        "name a readable .js file in `code`",
                    ));
                    break;
                }
            }
        }
    }
    for s in &dist.key_value_stores {
        if let Err(e) = load_store(&s.name, s.file.as_deref()) {
            errors.push(at(
                &cfg.origin,
                1,
                1,
                format!("distribution.key_value_store.{}", s.name),
                e.to_string(),
                "give a JSON file in CloudFront's import format: {\"data\": [{\"key\": \"k\", \"value\": \"v\"}]}",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(meridian_config::ConfigErrors(errors))
    }
}
