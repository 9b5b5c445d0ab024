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

/// Logging for `raft-sentinel demo`: warnings and errors on the terminal, so the demo's own
/// output stays readable, and everything `RAFT_SENTINEL_LOG` (or the default filter) selects
/// in `file`.
pub fn init_demo(file: &std::path::Path) -> std::io::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    let file_filter = match std::env::var(LOG_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            EnvFilter::try_new(&v).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let terminal = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(EnvFilter::new("warn,raft_rs=error"));
    let to_file = tracing_subscriber::fmt::layer()
        .with_writer(std::sync::Arc::new(log))
        .with_ansi(false)
        .with_filter(file_filter);
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(to_file)
        .try_init();
    Ok(())
}
