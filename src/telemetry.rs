//! Logging setup. The filter comes from `RAFT_SENTINEL_LOG` (EnvFilter syntax, default
//! `info,raft_rs=warn`); the format is plain or JSON.
//!
//! Field names used across the code base: `node_id, peer_id, term, index, commit, leader_id,
//! master, addr, role, epoch, error`. Sentinel event names (`+sdown`, `+switch-master`) appear
//! in the `event` field and at the start of the message so operators can grep for them.

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub const LOG_ENV: &str = "RAFT_SENTINEL_LOG";
/// Filter when the variable is unset. raft-rs's own records use the target `raft_rs` (a
/// `raft` directive would also match every `raft_sentinel::*` target: targets match by prefix).
pub const DEFAULT_FILTER: &str = "info,raft_rs=warn";

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
    let filter = match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(&v).unwrap_or_else(|e| {
            eprintln!(
                "raft-sentinel: ignoring invalid {LOG_ENV}='{v}': {e}; using {DEFAULT_FILTER}"
            );
            EnvFilter::new(DEFAULT_FILTER)
        }),
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
