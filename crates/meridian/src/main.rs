//! The `meridian` command: a thin layer of subcommands over the libraries. Each
//! subcommand is a file under `cmd/`.

mod cmd;

/// Every node allocates per request (header maps, bodies, futures); glibc's allocator took
/// about a tenth of a cache hit's and a proxied request's instructions, mimalloc's
/// thread-local free lists far less. Built from C by the `cc` crate: no other tool.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Meridian: a self-hosted multi-region edge and traffic platform",
    long_about = "Meridian runs what a CloudFront + Route 53 + ALB deployment does, from one config \
                  file and one binary. `meridian up` starts the whole deployment on this machine; \
                  `meridian run` starts one node of it on a real machine.\n\n\
                  With no --config, the embedded default is used: the RichesReach deployment with \
                  regions us-east-1 (primary), eu-west-1 and ap-southeast-1."
)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Cmd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not for the processes that run nodes: an exit skips the destructors that stop a
    // supervisor's children.
    if !matches!(
        cli.command,
        cmd::Cmd::Up(_) | cmd::Cmd::Run(_) | cmd::Cmd::Agent(_) | cmd::Cmd::DemoOrigin(_)
    ) {
        quiet_on_closed_stdout();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", cmd::describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// A reader that goes away (`meridian secrets list | head -1`) ends a short-lived command
/// quietly with the status a shell gives a process SIGPIPE ended (128 + 13), as a Unix
/// tool does: `println!` panics when standard output is a closed pipe.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.ends_with("(os error 32)") {
            std::process::exit(141);
        }
        default(info);
    }));
}
