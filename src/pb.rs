//! Generated protobuf and gRPC code. Used only by `net` and `api`.

#![allow(missing_docs, clippy::all)]

/// The Raft peer transport.
pub mod peer {
    tonic::include_proto!("raftsentinel.peer.v1");
}

/// The public API.
pub mod api {
    tonic::include_proto!("raftsentinel.v1");
}

/// Encoded file descriptor set of the public API only (served by reflection on the API port;
/// the peer protocol is deliberately absent).
pub const API_FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("api_descriptor");
