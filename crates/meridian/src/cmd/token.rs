//! `meridian token`: a development JWT for a JWT authorizer whose signing key `up` made
//! (an authorizer without a `jwks` file), so a person can call the protected parts of the
//! default deployment: `curl -H "Authorization: Bearer $(meridian token)" ...`.

use super::deployment::running_deployment;
use anyhow::{bail, Context, Result};
use meridian_config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The token's subject (`sub`): the user the origin sees.
    #[arg(long, default_value = "demo-user")]
    sub: String,
    /// The `[[distribution.jwt_authorizer]]` to mint for; by default the first.
    #[arg(long)]
    authorizer: Option<String>,
    /// How long the token is valid.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Another claim, as NAME=VALUE (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// The deployment's config; by default the one running from the state dir, else the
    /// embedded default.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The state dir holding the development keys; $MERIDIAN_STATE_DIR, else .meridian.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub fn run(args: TokenArgs) -> Result<ExitCode> {
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("MERIDIAN_STATE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".meridian"));
    let config = match &args.config {
        Some(p) => Config::load(p)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot read the config {}", p.display()))?,
        None => match running_deployment(&state_dir) {
            Ok((c, _)) => c,
            Err(_) => Config::embedded_default(),
        },
    };
    let authorizers = &config.distribution.protection.jwt_authorizers;
    let a = match &args.authorizer {
        Some(name) => authorizers
            .iter()
            .find(|a| &a.name == name)
            .with_context(|| {
                let known: Vec<&str> = authorizers.iter().map(|a| a.name.as_str()).collect();
                format!(
                    "there is no JWT authorizer named `{name}` (known: {})",
                    known.join(", ")
                )
            })?,
        None => authorizers
            .first()
            .context("the deployment has no [[distribution.jwt_authorizer]]")?,
    };
    if let Some(file) = &a.jwks {
        bail!(
            "authorizer `{}` trusts the keys in {}: its tokens come from the identity provider that holds the private key, not from Meridian",
            a.name,
            file.display()
        );
    }
    let ttl = meridian_config::units::parse_duration(&args.ttl)
        .map_err(|e| anyhow::anyhow!("--ttl {}: {} ({})", args.ttl, e.problem, e.fix))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = serde_json::json!({
        "sub": args.sub,
        "iat": now,
        "exp": now + ttl.as_secs().max(1),
    });
    if let Some(iss) = &a.issuer {
        claims["iss"] = iss.clone().into();
    }
    if let Some(aud) = a.audiences.first() {
        claims["aud"] = aud.clone().into();
    }
    for c in &args.claims {
        let (k, v) = c
            .split_once('=')
            .with_context(|| format!("--claim {c}: write it as NAME=VALUE"))?;
        claims[k] = v.into();
    }
    let (key, _) = meridian_protect::dev_key::files(&state_dir, &a.name);
    if !key.exists() {
        bail!(
            "no development key for authorizer `{}` at {}: start the deployment with `meridian up` (it makes the key), or pass --state-dir",
            a.name,
            key.display()
        );
    }
    let token = meridian_protect::dev_key::mint(&state_dir, &a.name, &claims)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
