//! eraftpb ⇄ bytes. The only file that touches the rust-protobuf API, so the protobuf 2
//! dependency stays contained.

use raft::eraftpb::{ConfChangeV2, ConfState, Entry, HardState, Message};

/// A protobuf payload could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct CodecError(String);

/// Encodes any raft protobuf message.
pub fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft messages always encode")
}

fn decode<M: protobuf::Message>(b: &[u8]) -> Result<M, CodecError> {
    M::parse_from_bytes(b).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a Raft message received from a peer.
pub fn decode_message(b: &[u8]) -> Result<Message, CodecError> {
    decode(b)
}

/// Decodes a stored log entry.
pub fn decode_entry(b: &[u8]) -> Result<Entry, CodecError> {
    decode(b)
}

/// Decodes a stored hard state.
pub fn decode_hard_state(b: &[u8]) -> Result<HardState, CodecError> {
    decode(b)
}

/// Decodes a stored conf state.
pub fn decode_conf_state(b: &[u8]) -> Result<ConfState, CodecError> {
    decode(b)
}

/// Decodes a conf change from an entry's data.
pub fn decode_conf_change_v2(b: &[u8]) -> Result<ConfChangeV2, CodecError> {
    decode(b)
}
