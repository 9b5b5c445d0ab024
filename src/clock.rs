//! The wall clock, read in one place. Times carried inside Raft commands and shown to
//! operators are wall-clock milliseconds; durations inside a node use `tokio::time`.

/// Wall clock in ms since the Unix epoch, for times carried inside commands.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
