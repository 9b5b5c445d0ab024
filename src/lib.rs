//! raft-sentinel: a Redis high-availability coordinator.
//!
//! Three or five coordinator nodes watch the Redis servers, agree on every failure and every
//! master change through a Raft log, promote a replica with `REPLICAOF NO ONE`, fence the old
//! master, and serve the current master over gRPC and a Sentinel-compatible RESP port.
//!
//! Layout and data flow (an arrow means "is used by"):
//! `model → fsm → consensus → {net, instance} → {monitor, failover} → api → app → main`.
//! [`view`] (what this node sees of each Redis instance) and [`clock`] may be read by every
//! layer above `fsm`. `failover` and `api` never import `monitor`, and `instance` imports
//! none of `monitor`, `failover` and `api` (scripts/check-layers.sh checks these rules).
//!
//! - [`model`]: pure domain types (addresses, ids, epochs).
//! - [`fsm`]: the replicated state machine; deterministic `apply(index, Command) -> Events`.
//! - [`consensus`]: the one task that owns the Raft node, durable storage, the handle other
//!   tasks use to propose, read and watch, and the transport abstraction.
//! - [`net`]: the peer transport over gRPC (Raft messages as opaque bytes).
//! - [`instance`]: talking to one Redis instance (connection, reply parsers, ACL check).
//! - [`monitor`]: probing Redis instances; subjective down proposed as observations.
//! - [`view`]: the local per-instance view the monitor writes and failover, api and metrics read.
//! - [`failover`]: leader-only failover executor, fenced by the committed epoch.
//! - [`api`]: the public gRPC service and the Sentinel-compatible RESP port.
//! - [`metrics`]: Prometheus metrics, `/health` and `/ready` on the metrics port.
//! - [`import`]: converts a Redis Sentinel `sentinel.conf` into this project's config.
//! - [`placement`]: keeps the Raft leader off hosts that run monitored masters.
//! - [`tuning`]: node-local timing knobs (`SENTINEL DEBUG`).
//! - [`app`]: composition root that builds and runs a node from its [`config::Config`].
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod consensus;
pub mod failover;
pub mod fsm;
pub mod import;
pub mod instance;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod net;
pub mod pb;
pub mod placement;
pub mod scripts;
pub mod shutdown;
pub mod stream;
pub mod telemetry;
pub mod tuning;
pub mod view;
pub mod webhooks;
