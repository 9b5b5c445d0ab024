//! Consensus: the task that owns the Raft node, its durable storage, the handle other tasks
//! use, and the transport abstraction. Knows the state machine, never tonic or Redis.

mod codec;
mod contact;
mod handle;
mod mailbox;
mod node;
mod stats;
mod status;
mod storage;
mod transport;

pub use codec::{decode_message, encode, CodecError};
pub use handle::{RaftHandle, Submitted, PROPOSE_TIMEOUT};
pub use mailbox::{
    BootDecision, Mailbox, MailboxFull, MailboxReceiver, ProposeError, MAILBOX_CAPACITY,
};
pub use node::{Boot, NodeConfig, RaftNode, StartError};
pub use stats::ProposalStats;
pub use status::{AppliedEvent, Membership, PeerProgress, RaftStatus, Role};
pub use storage::{
    AppliedState, DiskStore, Recovered, StoreError, VoteGuard, DB_FILE, INIT_INDEX, INIT_TERM,
};
pub use transport::{MemNetwork, MemTransport, Transport};

/// raft-rs logs through slog; this drain forwards its records to `tracing` under the
/// `raft_rs` target, so `raft_rs=warn` in the log filter controls them.
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
        // raft-rs's debug output prints whole messages; entry payloads are commands that can
        // carry passwords (SENTINEL SET auth-pass), so they never reach the log.
        let msg = redact_payloads(&record.msg().to_string());
        let kv = KvString(redact_payloads(&kv.0));
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft_rs", "{msg}{}", kv.0)
            }
            slog::Level::Warning => tracing::warn!(target: "raft_rs", "{msg}{}", kv.0),
            slog::Level::Info => tracing::info!(target: "raft_rs", "{msg}{}", kv.0),
            slog::Level::Debug => tracing::debug!(target: "raft_rs", "{msg}{}", kv.0),
            slog::Level::Trace => tracing::trace!(target: "raft_rs", "{msg}{}", kv.0),
        }
        Ok(())
    }
}

struct KvString(String);

/// Replaces every protobuf text field `data: "..."` with its length.
fn redact_payloads(text: &str) -> String {
    const FIELD: &str = "data: \"";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(FIELD) {
        out.push_str(&rest[..i]);
        let body = &rest[i + FIELD.len()..];
        let mut end = None;
        let mut escaped = false;
        for (j, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
        }
        match end {
            Some(j) => {
                out.push_str(&format!("data: <{j} bytes redacted>"));
                rest = &body[j + 1..];
            }
            None => {
                // Unterminated: redact everything after it.
                out.push_str("data: <redacted>");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

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

#[cfg(test)]
mod tests {
    use super::redact_payloads;

    #[test]
    fn entry_payloads_are_redacted() {
        let m = r#"msg_type: MsgAppend entries {data: "{\"op\":\"set\",\"v\":\"s3cret\"}" context: "x"} data: "" commit: 5"#;
        let r = redact_payloads(m);
        assert!(!r.contains("s3cret"), "{r}");
        assert!(
            r.contains("context: \"x\"") && r.contains("commit: 5"),
            "{r}"
        );
        assert!(r.contains("data: <0 bytes redacted>"));
        assert_eq!(redact_payloads("no payload here"), "no payload here");
        assert!(!redact_payloads("data: \"unterminated s3cret").contains("s3cret"));
    }
}
