//! The Sentinel-compatible RESP port: existing Redis Sentinel clients (redis-py, ioredis,
//! node-redis, go-redis, Jedis, Lettuce, redis-rs, StackExchange.Redis, redis-cli) use it
//! unchanged.
//!
//! Layout (mini-redis shape):
//! - [`frame`]: reply frames encoded as RESP2 or RESP3; two-pass request decoding with limits.
//! - [`parse`]: cursor over one request's arguments.
//! - [`connection`]: buffered I/O of one client, with backpressure and a write timeout.
//! - [`fast`]: pre-encoded replies of the master-address lookup, per applied state.
//! - [`server`]: accept loop, connection cap, per-client handler, Pub/Sub delivery, drain.
//! - [`clients`]: registry of connected clients (CLIENT LIST/KILL) and INFO counters.
//! - [`node_events`]: the events this node publishes of its own state (`+tilt`/`-tilt`).
//! - [`cmd`]: one module per command family; `cmd/mod.rs` looks commands up, checks arity,
//!   authentication and the Pub/Sub context the way Redis does, then dispatches.
//!
//! Data flow: every reply is computed from this node's applied Raft state
//! ([`RaftHandle::state`]) and its local monitor view; writes (`SENTINEL MONITOR`, `SET`,
//! `REMOVE`, `RESET`, `FAILOVER`) are proposed through the log and answered once applied;
//! Pub/Sub messages come from the events of applied entries, so every node publishes the
//! same events and switches its answers at the same committed `FailoverDone`; only `+tilt`
//! and `-tilt`, this node's own condition, come from its monitor view instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::SentinelPort;
use crate::consensus::RaftHandle;
use crate::shutdown::Shutdown;
use crate::view::MonitorView;

pub mod budget;
pub mod clients;
pub mod cmd;
pub mod connection;
pub mod fast;
pub mod frame;
pub mod node_events;
pub mod parse;
pub mod server;
pub mod stream;

pub use frame::{Frame, Limits, Protocol, ProtocolError};

/// Version reported in `HELLO` and `INFO`: clients pick features by it (StackExchange.Redis
/// uses `REPLICAS` from 5.0 on, `CLIENT SETINFO` exists from 7.2 on).
pub const REDIS_VERSION: &str = "7.2.4";

/// Connection and buffer limits of the port.
#[derive(Clone)]
pub struct RespOptions {
    /// Request size limits.
    pub limits: Limits,
    /// Connections served at once; more are closed right after accept (Redis `maxclients`).
    pub max_connections: usize,
    /// A client that does not take pending output for this long is disconnected: the
    /// equivalent of Redis's output-buffer hard limit, which bounds memory per client.
    pub write_timeout: Duration,
    /// Close connections idle for this long (Redis `timeout`, off by default as in Sentinel,
    /// because client libraries keep idle sentinel connections). Never applies to Pub/Sub.
    pub idle_timeout: Option<Duration>,
    /// Close a connection that has not authenticated within this long (with `requirepass`).
    pub unauth_idle_timeout: Option<Duration>,
    /// A request must arrive whole within this long of its first byte: a client trickling
    /// bytes (slowloris) is closed instead of holding a connection and a buffer forever.
    pub request_timeout: Option<Duration>,
    /// Bytes buffered (input and output) by all connections together; see [`budget`].
    pub buffer_budget: usize,
    /// A subscriber with more event output than this not yet taken is closed at once.
    pub pubsub_hard_limit: usize,
    /// A subscriber above this much pending event output for
    /// [`RespOptions::pubsub_soft_time`] in a row is closed.
    pub pubsub_soft_limit: usize,
    /// See [`RespOptions::pubsub_soft_limit`].
    pub pubsub_soft_time: Duration,
    /// After shutdown is triggered, connections get this long to finish their command.
    pub drain_grace: Duration,
    /// Serve TLS instead of plain TCP (see [`stream::acceptor`]).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for RespOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespOptions")
            .field("limits", &self.limits)
            .field("max_connections", &self.max_connections)
            .field("write_timeout", &self.write_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("unauth_idle_timeout", &self.unauth_idle_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("buffer_budget", &self.buffer_budget)
            .field("pubsub_hard_limit", &self.pubsub_hard_limit)
            .field("pubsub_soft_limit", &self.pubsub_soft_limit)
            .field("pubsub_soft_time", &self.pubsub_soft_time)
            .field("drain_grace", &self.drain_grace)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for RespOptions {
    fn default() -> Self {
        RespOptions::from_config(&SentinelPort::default())
    }
}

impl RespOptions {
    /// The options a `[sentinel_port]` configuration section gives (TLS not included).
    pub fn from_config(c: &SentinelPort) -> RespOptions {
        let secs = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        RespOptions {
            limits: Limits {
                // The whole request: the largest bulk plus its headers.
                max_request_len: c.max_request_bytes,
                unauth_max_request_len: c.unauth_max_request_bytes,
                max_bulk_len: c.max_request_bytes.min(Limits::default().max_bulk_len),
                ..Limits::default()
            },
            max_connections: c.max_connections,
            write_timeout: Duration::from_secs(c.write_timeout_secs.max(1)),
            idle_timeout: secs(c.idle_timeout_secs),
            unauth_idle_timeout: secs(c.unauth_idle_timeout_secs),
            request_timeout: secs(c.request_timeout_secs),
            buffer_budget: c.buffer_budget_bytes,
            pubsub_hard_limit: c.pubsub_hard_limit_bytes,
            pubsub_soft_limit: c.pubsub_soft_limit_bytes,
            pubsub_soft_time: Duration::from_secs(c.pubsub_soft_limit_secs),
            drain_grace: Duration::from_secs(3),
            tls: None,
        }
    }
}

/// Everything the port needs from the rest of the node. Cheap to clone.
#[derive(Clone)]
pub struct RespContext {
    /// Raft: applied state, proposals, events, leader contact.
    pub raft: RaftHandle,
    /// This node's local view of each Redis instance (instance-map fields).
    pub monitor: watch::Receiver<Arc<MonitorView>>,
    /// Password of the default user (`requirepass`); None: no authentication.
    pub requirepass: Option<String>,
    /// This node's 40-hex run id (`SENTINEL MYID`).
    pub run_id: String,
    /// This node's advertised sentinel address (`host:port`).
    pub announce: String,
    /// Limits and timeouts.
    pub options: RespOptions,
    /// The port's counters; the metrics port reads them too.
    pub stats: Arc<clients::Stats>,
    /// This node's script queue (`SENTINEL PENDING-SCRIPTS`, `INFO sentinel`).
    pub scripts: Arc<crate::scripts::Scripts>,
    /// `SENTINEL SET` of script paths is refused (`deny_scripts_reconfig`).
    pub deny_scripts_reconfig: bool,
    /// `announce_ip` of the configuration (`SENTINEL CONFIG GET announce-ip` starts with it).
    pub announce_ip: Option<String>,
    /// The Sentinel address this node has without `announce-ip`/`announce-port`: the
    /// address it listens on (or its peer host, when listening on all interfaces).
    pub sentinel_listen: crate::model::Addr,
    /// This node's timing knobs (`SENTINEL DEBUG`), shared with its monitor.
    pub tuning: Arc<crate::tuning::Tuning>,
    /// This node's TILT state, for `+tilt`/`-tilt` (see [`node_events`]). A context made by
    /// [`RespContext::new`] has one that never changes.
    pub tilt: watch::Receiver<crate::view::TiltView>,
}

impl RespContext {
    /// A context with default [`RespOptions`].
    pub fn new(
        raft: RaftHandle,
        monitor: watch::Receiver<Arc<MonitorView>>,
        requirepass: Option<String>,
        run_id: String,
        announce: String,
    ) -> RespContext {
        let sentinel_listen = announce.parse().unwrap_or_else(|_| crate::model::Addr {
            host: "127.0.0.1".into(),
            port: 26379,
        });
        RespContext {
            raft,
            monitor,
            requirepass,
            run_id,
            announce,
            options: RespOptions::default(),
            stats: Arc::default(),
            scripts: Arc::default(),
            deny_scripts_reconfig: true,
            announce_ip: None,
            sentinel_listen,
            tuning: Arc::default(),
            tilt: watch::channel(crate::view::TiltView::default()).1,
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: RespOptions) -> RespContext {
        self.options = options;
        self
    }
}

/// Serves the Sentinel port on `listener` until `shutdown`, then lets connections finish
/// their current command (bounded by [`RespOptions::drain_grace`]) and returns.
pub async fn serve(listener: TcpListener, ctx: RespContext, shutdown: Shutdown) {
    server::run(listener, ctx, shutdown).await
}
