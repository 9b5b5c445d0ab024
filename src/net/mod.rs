//! The Raft peer transport over gRPC: Raft messages travel as opaque bytes.

mod auth;
pub mod boot;
mod peer_client;
mod peer_server;

pub use auth::ClusterKey;
pub use peer_client::PeerNetwork;
pub use peer_server::PeerService;

/// Largest gRPC message on the peer port (a batch can carry a state snapshot).
pub const MAX_PEER_MESSAGE: usize = 32 * 1024 * 1024;

// The state machine's limits keep a snapshot under this bound (see `fsm::limits`).
const _: () = assert!(crate::fsm::limits::MAX_STATE_BYTES * 2 <= MAX_PEER_MESSAGE);
