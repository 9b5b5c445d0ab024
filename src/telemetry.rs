//! Logging setup. The filter comes from `RAFT_SENTINEL_LOG` (EnvFilter syntax, default
//! `info,raft=warn`); the format is plain or JSON.
//!
//! Field names used across the code base: `node_id, peer_id, term, index, commit, leader_id,
//! master, addr, role, epoch, error`. Sentinel event names (`+sdown`, `+switch-master`) appear
//! in the `event` field and at the start of the message so operators can grep for them.

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub const LOG_ENV: &str = "RAFT_SENTINEL_LOG";

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber (stderr). Safe to call once per process.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info,raft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
