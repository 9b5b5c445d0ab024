//! Leader-only failover executor (placeholder until the executor lands).
