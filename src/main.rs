//! The `raft-sentinel` binary: parse the command line, load config (exit 64 if it is bad),
//! set up logging, run. Everything else lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raft_sentinel::config::{Config, Overrides, PeerArg};
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
    /// Convert a Redis Sentinel sentinel.conf into this project's TOML config (stdout or
    /// --output); what cannot be carried over is listed on stderr.
    ImportSentinelConf {
        /// The sentinel.conf to read.
        file: PathBuf,
        /// Id of the node this config is for.
        #[arg(long, default_value_t = 1)]
        node_id: u64,
        /// Every coordinator node as ID=HOST:PORT (peer port); repeat for each.
        /// Default: this node alone on 127.0.0.1:7701.
        #[arg(long = "peer", value_name = "ID=HOST:PORT")]
        peers: Vec<PeerArg>,
        /// Data directory (default /var/lib/raft-sentinel/<node id>).
        #[arg(long)]
        data_dir: Option<String>,
        /// Write the config here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
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
        Cmd::ImportSentinelConf {
            file,
            node_id,
            peers,
            data_dir,
            output,
        } => import_sentinel_conf(&file, node_id, &peers, data_dir, output.as_deref()),
        Cmd::Demo(args) => {
            // The demo sets up its own logging once it knows its directory.
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

/// Exit code for an unusable input file (EX_DATAERR).
const EXIT_DATA: u8 = 65;

fn import_sentinel_conf(
    file: &std::path::Path,
    node_id: u64,
    peers: &[PeerArg],
    data_dir: Option<String>,
    output: Option<&std::path::Path>,
) -> ExitCode {
    use raft_sentinel::import::{convert, ImportTarget};
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("raft-sentinel: cannot read {}: {e}", file.display());
            return ExitCode::from(EXIT_DATA);
        }
    };
    let mut map: std::collections::BTreeMap<_, _> =
        peers.iter().map(|p| (p.id, p.addr.clone())).collect();
    if map.is_empty() {
        map.insert(node_id, "127.0.0.1:7701".to_string());
    }
    let target = ImportTarget {
        node_id,
        peers: map,
        data_dir: data_dir.unwrap_or_else(|| format!("/var/lib/raft-sentinel/{node_id}")),
    };
    let out = match convert(&text, &target) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("raft-sentinel: {}: {e}", file.display());
            return ExitCode::from(EXIT_DATA);
        }
    };
    // The result must load exactly as `run` would load it.
    if let Err(e) = Config::resolve("converted config", &out.toml, &Overrides::default()) {
        eprintln!("raft-sentinel: the converted config is invalid: {e}");
        return ExitCode::from(EXIT_DATA);
    }
    for s in &out.skipped {
        eprintln!("not carried over: {s}");
    }
    eprintln!(
        "converted {} master(s): {}",
        out.masters.len(),
        out.masters.join(", ")
    );
    match output {
        Some(p) => {
            if let Err(e) = std::fs::write(p, &out.toml) {
                eprintln!("raft-sentinel: cannot write {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        None => print!("{}", out.toml),
    }
    ExitCode::SUCCESS
}
