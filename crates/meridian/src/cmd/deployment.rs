//! Reaching a deployment from the CLI: reading its config, finding the running one, its
//! admin token, and TLS clients that trust its certificates. Shared by the subcommands.

use anyhow::{Context, Result};
use meridian_config::{Config, DEFAULT_CONFIG, DEFAULT_ORIGIN};
use std::path::Path;
use std::process::ExitCode;

/// Reads a config; on invalid input prints every error and exits with status 2.
pub(crate) fn load_config(path: Option<&Path>) -> Result<(Config, String), ExitCode> {
    let (text, origin) = match path {
        None => (DEFAULT_CONFIG.to_owned(), DEFAULT_ORIGIN.to_owned()),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => (t, p.display().to_string()),
            Err(e) => {
                eprintln!("error: cannot read config file {}: {e}", p.display());
                return Err(ExitCode::from(2));
            }
        },
    };
    match Config::parse(&text, &origin) {
        Ok(c) => Ok((c, text)),
        Err(errors) => {
            eprintln!("{errors}");
            Err(ExitCode::from(2))
        }
    }
}

/// The config and state of the deployment a running `meridian up` writes to `state_dir`.
pub(crate) fn running_deployment(
    state_dir: &Path,
) -> Result<(Config, meridian_config::state::DeploymentState)> {
    let state = meridian_config::state::DeploymentState::read(state_dir).with_context(|| {
        format!(
            "no running deployment in {} (start one with `meridian up`, or pass --state-dir)",
            state_dir.display()
        )
    })?;
    // A stale file must not send the admin token to whatever listens at its addresses now.
    let gone = state.status == meridian_config::state::Status::Stopped
        || !process_alive(state.supervisor_pid);
    if gone {
        anyhow::bail!(
            "the deployment in {} is not running (its `meridian up`, pid {}, has stopped): start it with `meridian up`, or pass the --state-dir of the one that runs",
            state_dir.display(),
            state.supervisor_pid
        );
    }
    let config = Config::load(&state.config).with_context(|| {
        format!(
            "cannot read the deployment's config {}",
            state.config.display()
        )
    })?;
    Ok((config, state))
}

/// Whether a process with `pid` exists (one of another user counts: it is there).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The deployment's admin token, from where its `[secrets]` says (the state dir's file by
/// default), for the CLI's calls to admin endpoints.
pub(crate) fn admin_token(config: &Config, state_dir: &Path) -> Result<String> {
    Ok(
        meridian_http::secrets::AdminToken::load(&config.secrets.admin_token, state_dir)
            .context("cannot read the deployment's admin token")?
            .current(),
    )
}

/// A TLS client that trusts the development certificate `up` made in `state_dir`.
pub(crate) fn dev_cert_client(state_dir: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    let (cert, _) = meridian_http::tls::dev_cert_paths(state_dir);
    client_trusting(&cert).with_context(|| "--tls needs the deployment's development certificate")
}

/// A TLS client that trusts the certificates in a PEM file.
pub(crate) fn client_trusting(pem: &Path) -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(pem)
        .with_context(|| format!("cannot read certificates from {}", pem.display()))?
    {
        roots.add(c.context("a certificate in the file")?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}
