//! The `raft-sentinel` binary: parse the command line, load config (exit 64 if it is bad),
//! set up logging, run. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raft_sentinel::config::{Config, Overrides};
use raft_sentinel::telemetry::{self, LogFormat};

mod ctl;
mod demo;

/// Exit code for a bad configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "raft-sentinel",
    version,
    about = "Redis high-availability coordinator agreeing through Raft, with a Sentinel-compatible port"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a coordinator node.
    Run {
        /// TOML configuration file.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        overrides: Overrides,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
        log_format: LogFormat,
    },
    /// Operator client of a node's gRPC API.
    Ctl(ctl::CtlArgs),
    /// A complete local setup: a Redis master, two replicas and three nodes on loopback.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            config,
            overrides,
            log_format,
        } => {
            telemetry::init(log_format);
            let cfg = match Config::load(&config, &overrides) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("raft-sentinel: {e}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match rt.block_on(raft_sentinel::app::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "node failed");
                    eprintln!("raft-sentinel: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Ctl(args) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(ctl::run(args))
        }
        Cmd::Demo(args) => {
            telemetry::init(LogFormat::Plain);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match rt.block_on(demo::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raft-sentinel demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
