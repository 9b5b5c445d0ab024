//! What this node currently sees of every Redis instance: the monitor writes it, the
//! failover executor and the API (Sentinel `MASTER`/`REPLICAS` fields, gRPC detail) read it.
//! Local, not replicated: each node has its own view.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::fsm::ObserveReason;
use crate::model::Addr;

/// Role an instance reports in `ROLE` / `INFO replication`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportedRole {
    /// `role:master`
    Master,
    /// `role:slave`
    Replica,
}

/// Everything known locally about one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceInfo {
    /// The instance.
    pub addr: Addr,
    /// Name of the monitored master this instance belongs to.
    pub master: String,
    /// `run_id` from INFO.
    pub run_id: Option<String>,
    /// Role it reports.
    pub role: Option<ReportedRole>,
    /// When the reported role last changed.
    pub role_reported_at: Option<Instant>,
    /// Oldest PING still unanswered.
    pub ping_pending_since: Option<Instant>,
    /// Last acceptable PING reply (`PONG`, `-LOADING`, `-MASTERDOWN`).
    pub last_ok_ping_reply: Option<Instant>,
    /// Last reply of any kind.
    pub last_ping_reply: Option<Instant>,
    /// Last successful INFO.
    pub info_refresh: Option<Instant>,
    /// Subjectively down since (this node's view).
    pub sdown_since: Option<Instant>,
    /// A connection is currently established.
    pub connected: bool,
    /// For replicas: the master they follow (`master_host`/`master_port`).
    pub master_host: Option<String>,
    /// See `master_host`.
    pub master_port: Option<u16>,
    /// For replicas: `master_link_status:up`.
    pub master_link_up: bool,
    /// For replicas: `master_link_down_since_seconds` as a duration.
    pub master_link_down: Option<Duration>,
    /// `slave_priority` / `replica-priority` (0 = never promote).
    pub priority: Option<u32>,
    /// Replication offset (`slave_repl_offset` for replicas, `master_repl_offset` for masters).
    pub repl_offset: i64,
    /// `replica_announced` (hidden from REPLICAS when false).
    pub replica_announced: bool,
    /// Last error talking to it, for logs and status.
    pub last_error: Option<String>,
    /// For masters: the replicas its INFO lists (`slaveN:` lines), as discovered.
    pub replicas: Vec<Addr>,
    /// `master_failover_state` (Redis `FAILOVER` progress), when reported.
    pub failover_state: Option<String>,
    /// Why this node considers the instance subjectively down, while it does.
    pub sdown_reason: Option<ObserveReason>,
    /// Keys in all databases (`INFO keyspace`), from the last INFO round.
    pub keys: Option<i64>,
    /// The last `INFO` text read (server and replication sections), for `SENTINEL INFO-CACHE`.
    pub info_text: Option<std::sync::Arc<str>>,
}

impl InstanceInfo {
    /// A not-yet-probed instance.
    pub fn new(addr: Addr, master: impl Into<String>) -> Self {
        InstanceInfo {
            addr,
            master: master.into(),
            run_id: None,
            role: None,
            role_reported_at: None,
            ping_pending_since: None,
            last_ok_ping_reply: None,
            last_ping_reply: None,
            info_refresh: None,
            sdown_since: None,
            connected: false,
            master_host: None,
            master_port: None,
            master_link_up: false,
            master_link_down: None,
            priority: None,
            repl_offset: 0,
            replica_announced: true,
            last_error: None,
            replicas: Vec::new(),
            failover_state: None,
            sdown_reason: None,
            keys: None,
            info_text: None,
        }
    }
}

impl InstanceInfo {
    /// True when `self` and `other` differ in more than how recent they are: the PING reply
    /// times, the INFO time and the INFO text (whose `uptime_in_seconds` moves every second).
    /// Listing every field by destructuring makes a new field a compile error here, so it
    /// cannot be left out of the comparison by accident.
    pub fn differs_beyond_freshness(&self, other: &InstanceInfo) -> bool {
        let InstanceInfo {
            addr,
            master,
            run_id,
            role,
            role_reported_at,
            ping_pending_since,
            last_ok_ping_reply: _,
            last_ping_reply: _,
            info_refresh: _,
            sdown_since,
            connected,
            master_host,
            master_port,
            master_link_up,
            master_link_down,
            priority,
            repl_offset,
            replica_announced,
            last_error,
            replicas,
            failover_state,
            sdown_reason,
            keys,
            info_text: _,
        } = self;
        *addr != other.addr
            || *master != other.master
            || *run_id != other.run_id
            || *role != other.role
            || *role_reported_at != other.role_reported_at
            || *ping_pending_since != other.ping_pending_since
            || *sdown_since != other.sdown_since
            || *connected != other.connected
            || *master_host != other.master_host
            || *master_port != other.master_port
            || *master_link_up != other.master_link_up
            || *master_link_down != other.master_link_down
            || *priority != other.priority
            || *repl_offset != other.repl_offset
            || *replica_announced != other.replica_announced
            || *last_error != other.last_error
            || *replicas != other.replicas
            || *failover_state != other.failover_state
            || *sdown_reason != other.sdown_reason
            || *keys != other.keys
            // A first INFO must show at once.
            || self.info_refresh.is_some() != other.info_refresh.is_some()
    }
}

/// This node's TILT state, published on a channel of its own rather than in [`MonitorView`]:
/// it changes once per stall, while the instances' entries change hundreds of times a second
/// at a few hundred instances, and a reader of TILT alone need not wake for those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TiltView {
    /// In TILT since (this process stalled or its clock jumped: probe results are void).
    pub since: Option<Instant>,
    /// Times this node entered TILT since it started, a new stall during a TILT included
    /// (each is a `+tilt`, as in Sentinel). With `since` it tells a reader every
    /// `+tilt`/`-tilt`, even when it saw only the newest of several values.
    pub entered: u64,
}

/// The whole local view, published through a `watch<Arc<MonitorView>>`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MonitorView {
    /// Every watched instance (masters and replicas of every monitored master).
    pub instances: BTreeMap<Addr, InstanceInfo>,
}

impl MonitorView {
    /// The instance at `addr`, if watched.
    pub fn get(&self, addr: &Addr) -> Option<&InstanceInfo> {
        self.instances.get(addr)
    }
}
