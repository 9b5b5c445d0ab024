//! Client-facing APIs: the public gRPC service and the Sentinel-compatible RESP port.
//! They read applied state and propose through `RaftHandle`; they never touch the monitor,
//! the failover executor internals or the peer transport.

pub mod auth;
pub mod flags;
pub mod grpc;
pub mod grpc_port;
pub mod resp;
pub mod watch;
