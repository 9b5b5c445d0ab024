//! Consensus: the task that owns the Raft node, its durable storage, the handle other tasks
//! use, and the transport abstraction. Knows the state machine, never tonic or Redis.

mod codec;
mod handle;
mod node;
mod stats;
mod storage;
mod transport;

pub use codec::{decode_message, encode, CodecError};
pub use handle::{
    AppliedEvent, PeerProgress, ProposeError, RaftHandle, RaftStatus, Role, PROPOSE_TIMEOUT,
};
pub use node::{wall_ms, MailboxReceiver, NodeConfig, RaftNode, StartError, MAILBOX_CAPACITY};
pub use stats::ProposalStats;
pub use storage::{AppliedState, DiskStore, Recovered, StoreError, DB_FILE, INIT_INDEX, INIT_TERM};
pub use transport::{Mailbox, MailboxFull, MemNetwork, MemTransport, Transport};

/// raft-rs logs through slog; this drain forwards its records to `tracing` under the
/// `raft` target, so `raft=warn` in the log filter controls them.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        let mut kv = KvString(String::new());
        let _ = slog::KV::serialize(values, record, &mut kv);
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let msg = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{msg}{}", kv.0)
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Debug => tracing::debug!(target: "raft", "{msg}{}", kv.0),
            slog::Level::Trace => tracing::trace!(target: "raft", "{msg}{}", kv.0),
        }
        Ok(())
    }
}

struct KvString(String);

impl slog::Serializer for KvString {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

pub(crate) fn raft_logger(node_id: u64) -> slog::Logger {
    slog::Logger::root(
        slog::Drain::fuse(TracingDrain),
        slog::o!("raft_id" => node_id),
    )
}
