//! Prometheus metrics and the HTTP endpoints of the metrics port: `/metrics`, `/health`
//! (the process is alive and its Raft task runs) and `/ready` (in contact with a Raft leader,
//! so its answers can be trusted).
//!
//! Gauges are computed from the applied state, the Raft status and the monitor view at scrape
//! time; counters live in shared structures updated where things happen. No label or value
//! ever carries a secret.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use parking_lot::Mutex;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::api::grpc_port::GrpcPortStats;
use crate::api::resp::clients::{Limit, Stats as SentinelPortStats};
use crate::consensus::{RaftHandle, Role};
use crate::fsm::{ClusterState, FailoverRecord, MasterState};
use crate::shutdown::Shutdown;
use crate::view::{MonitorView, TiltView};

type Labels = Vec<(&'static str, String)>;

/// Values of the `reason` label of `failover_aborts_total` (the fsm's abort codes, and
/// `other` for an abort without one).
pub const ABORT_REASONS: [&str; 4] = ["no-good-slave", "slave-timeout", "not-elected", "other"];

/// Counters fed from applied events (every node counts the same committed events).
///
/// Each monitored master has every series from the moment it is monitored, starting at 0, so
/// that the first event is an increase Prometheus can see; a removed master's series go away.
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Completed promotions (`+switch-master`) per master.
    pub failovers: Family<Labels, Counter>,
    /// Aborted failovers per master and reason.
    pub aborts: Family<Labels, Counter>,
    /// Times a master became objectively down.
    pub odown: Family<Labels, Counter>,
    /// Masters whose series exist.
    known: Mutex<BTreeSet<String>>,
}

fn master_label(master: &str) -> Labels {
    vec![("master", master.to_string())]
}

fn abort_labels(master: &str, reason: &str) -> Labels {
    vec![
        ("master", master.to_string()),
        ("reason", reason.to_string()),
    ]
}

/// The abort reason of a history record's outcome (`aborted: <code>: <detail>`), if aborted.
fn abort_reason(outcome: &str) -> Option<&'static str> {
    let why = outcome.strip_prefix("aborted: ")?;
    let code = why.split(':').next().unwrap_or("").trim();
    Some(
        ABORT_REASONS
            .into_iter()
            .find(|r| *r == code)
            .unwrap_or("other"),
    )
}

/// When the last failover of `master` kept in `history` was aborted, per reason (0: never).
/// State rather than event counters: the same on every node and across restarts, so a node
/// that catches up on an old abort does not look like a new one.
fn last_aborts(history: &VecDeque<FailoverRecord>, master: &str) -> [(&'static str, u64); 4] {
    let mut out = ABORT_REASONS.map(|r| (r, 0));
    for r in history.iter().filter(|r| r.master == master) {
        if let (Some(reason), Some(end)) = (abort_reason(&r.outcome), r.ended_at_ms) {
            if let Some(slot) = out.iter_mut().find(|(x, _)| *x == reason) {
                slot.1 = slot.1.max(end);
            }
        }
    }
    out
}

impl EventCounters {
    /// Creates the series of newly monitored masters at 0 and removes those of masters that
    /// are no longer monitored.
    pub fn sync<'a>(&self, masters: impl IntoIterator<Item = &'a str>) {
        let now: BTreeSet<String> = masters.into_iter().map(str::to_string).collect();
        let mut known = self.known.lock();
        for gone in known.difference(&now) {
            self.failovers.remove(&master_label(gone));
            self.odown.remove(&master_label(gone));
            for r in ABORT_REASONS {
                self.aborts.remove(&abort_labels(gone, r));
            }
        }
        for new in now.difference(&known) {
            drop(self.failovers.get_or_create(&master_label(new)));
            drop(self.odown.get_or_create(&master_label(new)));
            for r in ABORT_REASONS {
                drop(self.aborts.get_or_create(&abort_labels(new, r)));
            }
        }
        *known = now;
    }

    /// Counts one applied event.
    fn count(&self, kind: &str, master: &str) {
        match kind {
            "+switch-master" => {
                self.failovers.get_or_create(&master_label(master)).inc();
            }
            "+odown" => {
                self.odown.get_or_create(&master_label(master)).inc();
            }
            k if k.starts_with("-failover-abort") => {
                let code = k
                    .trim_start_matches("-failover-abort")
                    .trim_start_matches('-');
                let reason = ABORT_REASONS
                    .into_iter()
                    .find(|r| *r == code)
                    .unwrap_or("other");
                self.aborts
                    .get_or_create(&abort_labels(master, reason))
                    .inc();
            }
            _ => {}
        }
    }
}

/// Everything the metrics port exposes for one node.
#[derive(Clone)]
pub struct NodeMetrics {
    raft: RaftHandle,
    monitor: watch::Receiver<Arc<MonitorView>>,
    tilt: watch::Receiver<TiltView>,
    events: Arc<EventCounters>,
    ports: PortStats,
}

/// The counters of the client ports.
#[derive(Clone)]
pub struct PortStats {
    /// The Sentinel port's (also behind its INFO).
    pub sentinel: Arc<SentinelPortStats>,
    /// The gRPC API port's.
    pub grpc: Arc<GrpcPortStats>,
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

impl NodeMetrics {
    /// Metrics of the node behind `raft`, with the counters of its client ports.
    pub fn new(
        raft: RaftHandle,
        monitor: watch::Receiver<Arc<MonitorView>>,
        tilt: watch::Receiver<TiltView>,
        ports: PortStats,
    ) -> Self {
        NodeMetrics {
            raft,
            monitor,
            tilt,
            events: Arc::default(),
            ports,
        }
    }

    /// The event counters (fed by [`count_events`]).
    pub fn events(&self) -> Arc<EventCounters> {
        self.events.clone()
    }

    /// Renders the text exposition.
    pub fn render(&self) -> String {
        let mut reg = Registry::with_prefix("raft_sentinel");
        let state = self.raft.state();
        let view = self.monitor.borrow().clone();
        self.register_node(&mut reg, &state);
        let mut masters = MasterFamilies::default();
        for m in state.masters.values() {
            masters.add(m, &state, &view);
        }
        self.events
            .sync(state.masters.values().map(|m| m.name.as_str()));
        masters.register(&mut reg);
        self.register_events(&mut reg);
        self.ports.register(&mut reg);
        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String cannot fail");
        out
    }

    /// This node: Raft progress, TILT, the epoch, proposals.
    fn register_node(&self, reg: &mut Registry, state: &ClusterState) {
        let st = self.raft.status();
        let tilt = *self.tilt.borrow();
        let node = self.raft.node_id();
        gauge(reg, "node_id", "This node's id", node as i64);
        gauge(reg, "raft_term", "Current Raft term", st.term as i64);
        gauge(
            reg,
            "raft_leader_id",
            "Known Raft leader (0: none)",
            st.leader_id as i64,
        );
        gauge(
            reg,
            "raft_is_leader",
            "1 if this node is the Raft leader",
            i64::from(st.role == Role::Leader),
        );
        gauge(
            reg,
            "raft_commit_index",
            "Raft commit index",
            st.commit as i64,
        );
        gauge(
            reg,
            "raft_applied_index",
            "Last applied log index",
            st.applied as i64,
        );
        gauge(reg, "raft_voters", "Voting members", st.voters.len() as i64);
        gauge(
            reg,
            "raft_leader_contact",
            "1 while this node is in contact with a Raft leader (its answers can be trusted)",
            i64::from(self.raft.has_leader_contact()),
        );
        gauge(
            reg,
            "tilt",
            "1 while this node is in TILT: it stalled or its clock jumped, so its probe results are void and it casts no down vote",
            i64::from(tilt.since.is_some()),
        );
        // Node-local, like the gauge: not among the event counters, which every node counts
        // alike from the log.
        let tilts: Counter = Counter::default();
        tilts.inc_by(tilt.entered);
        reg.register(
            "tilt_entered",
            "Times this node entered TILT since it started (each +tilt it published; a new stall during a TILT counts again)",
            tilts,
        );
        gauge(
            reg,
            "apply_halted_index",
            "Index of a committed entry this node cannot decode and stopped applying at (0: applying)",
            st.halted.as_ref().map_or(0, |(i, _)| *i as i64),
        );
        gauge(
            reg,
            "current_epoch",
            "Highest failover epoch",
            state.current_epoch as i64,
        );
        let stats = self.raft.proposal_stats();
        reg.register("proposals", "Proposals by outcome", stats.total.clone());
        reg.register(
            "proposal_duration_seconds",
            "Time from proposing to applied on this node",
            stats.duration.clone(),
        );
    }

    /// The counters fed from applied events.
    fn register_events(&self, reg: &mut Registry) {
        reg.register(
            "failovers",
            "Completed failovers (address switched) seen applied",
            self.events.failovers.clone(),
        );
        reg.register(
            "failover_aborts",
            "Aborted failovers seen applied",
            self.events.aborts.clone(),
        );
        reg.register(
            "odown_events",
            "Times a master became objectively down",
            self.events.odown.clone(),
        );
    }
}

type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The per-master gauges, computed from the applied state and this node's monitor view.
#[derive(Default)]
struct MasterFamilies {
    epoch: Family<Labels, Gauge>,
    odown: Family<Labels, Gauge>,
    down: Family<Labels, Gauge>,
    reachable: Family<Labels, Gauge>,
    replicas: Family<Labels, Gauge>,
    paused: Family<Labels, Gauge>,
    in_progress: Family<Labels, Gauge>,
    last: Family<Labels, SecondsGauge>,
    last_abort: Family<Labels, SecondsGauge>,
}

impl MasterFamilies {
    fn add(&mut self, m: &MasterState, state: &ClusterState, view: &MonitorView) {
        let l = || vec![("master", m.name.clone())];
        self.epoch.get_or_create(&l()).set(m.config_epoch as i64);
        self.odown.get_or_create(&l()).set(i64::from(m.is_odown()));
        self.paused.get_or_create(&l()).set(i64::from(m.paused));
        self.in_progress
            .get_or_create(&l())
            .set(i64::from(m.failover.is_some() || m.reconf.is_some()));
        self.replicas
            .get_or_create(&l())
            .set(m.replicas.len() as i64);
        // Every member's latest observation; 0 for a member that reported none yet.
        for n in state.members.keys().chain(m.observations.keys()) {
            let seen = m.observations.get(n).is_some_and(|o| o.down);
            self.down
                .get_or_create(&vec![("master", m.name.clone()), ("node", n.to_string())])
                .set(i64::from(seen));
        }
        let up = view
            .get(&m.addr)
            .is_some_and(|i| i.connected && i.sdown_since.is_none());
        self.reachable.get_or_create(&l()).set(i64::from(up));
        // 0 until a failover of this master completed the phase.
        let record = state
            .history
            .iter()
            .rev()
            .find(|r| r.master == m.name && r.promoted_at_ms.is_some());
        let seconds = |end: Option<u64>| match (record, end) {
            (Some(r), Some(e)) => (e as f64 - r.started_at_ms as f64) / 1000.0,
            _ => 0.0,
        };
        self.last
            .get_or_create(&vec![
                ("master", m.name.clone()),
                ("phase", "promotion".into()),
            ])
            .set(seconds(record.and_then(|r| r.promoted_at_ms)));
        self.last
            .get_or_create(&vec![("master", m.name.clone()), ("phase", "total".into())])
            .set(seconds(record.and_then(|r| r.ended_at_ms)));
        for (reason, at_ms) in last_aborts(&state.history, &m.name) {
            self.last_abort
                .get_or_create(&abort_labels(&m.name, reason))
                .set(at_ms as f64 / 1000.0);
        }
    }

    fn register(self, reg: &mut Registry) {
        reg.register(
            "master_config_epoch",
            "Epoch of the master's last promotion",
            self.epoch,
        );
        reg.register(
            "master_odown",
            "1 if the master is objectively down (quorum agrees)",
            self.odown,
        );
        reg.register(
            "master_down_observed",
            "Each node's latest committed observation of the master (1 = down)",
            self.down,
        );
        reg.register(
            "master_reachable",
            "1 if this node currently gets valid replies from the master",
            self.reachable,
        );
        reg.register("master_replicas", "Known replicas", self.replicas);
        reg.register(
            "master_paused",
            "1 if automatic failover is paused",
            self.paused,
        );
        reg.register(
            "master_failover_in_progress",
            "1 while a failover runs",
            self.in_progress,
        );
        reg.register(
            "master_last_failover_seconds",
            "Duration of the last failover by phase (promotion: until the address switched; total: until reconfiguration ended); 0 until a failover completed the phase",
            self.last,
        );
        reg.register(
            "master_last_abort_timestamp_seconds",
            "Unix time of the last aborted failover by reason, from the replicated failover history (0: none in it)",
            self.last_abort,
        );
    }
}

impl PortStats {
    /// Per client port, from startup.
    fn register(&self, reg: &mut Registry) {
        let port = |p: &str| vec![("port", p.to_string())];
        let call = |p: &str, c: &str| vec![("port", p.to_string()), ("command", c.to_string())];
        let sp = &self.sentinel;
        let gp = &self.grpc;
        let connections: Family<Labels, Gauge> = Family::default();
        connections
            .get_or_create(&port("sentinel"))
            .set(sp.connected.load(Ordering::Relaxed) as i64);
        connections
            .get_or_create(&port("grpc"))
            .set(gp.connections());
        let commands: Family<Labels, Counter> = Family::default();
        for (id, name) in crate::api::resp::cmd::table::runnable() {
            commands
                .get_or_create(&call("sentinel", name))
                .inc_by(sp.commands.get(id));
        }
        commands
            .get_or_create(&call("sentinel", "other"))
            .inc_by(sp.commands.other());
        for (method, n) in gp.calls() {
            commands.get_or_create(&call("grpc", method)).inc_by(n);
        }
        let errors: Family<Labels, Counter> = Family::default();
        errors
            .get_or_create(&port("sentinel"))
            .inc_by(sp.error_replies.load(Ordering::Relaxed));
        errors.get_or_create(&port("grpc")).inc_by(gp.errors());
        let rejected: Family<Labels, Counter> = Family::default();
        rejected
            .get_or_create(&port("sentinel"))
            .inc_by(sp.rejected_connections.load(Ordering::Relaxed));
        let limited: Family<Labels, Counter> = Family::default();
        for l in Limit::ALL {
            limited
                .get_or_create(&vec![
                    ("port", "sentinel".to_string()),
                    ("limit", l.name().to_string()),
                ])
                .inc_by(sp.limits.get(l));
        }
        reg.register("port_connections", "Open client connections", connections);
        reg.register(
            "port_commands",
            "Client requests by command or gRPC method (other: unknown command or method, or wrong number of arguments)",
            commands,
        );
        reg.register(
            "port_errors",
            "Error replies sent to clients (gRPC: calls that ended with an error status)",
            errors,
        );
        reg.register(
            "port_rejected_connections",
            "Connections refused because the Sentinel port was at its connection limit or over its client buffer budget",
            rejected,
        );
        reg.register(
            "port_limited_connections",
            "Connections refused (limit max_connections, buffer_budget_refused) or closed (the others) by a client limit of the Sentinel port",
            limited,
        );
    }
}

/// Feeds the event counters from applied events until shutdown.
pub async fn count_events(raft: RaftHandle, counters: Arc<EventCounters>, mut shutdown: Shutdown) {
    let mut rx = raft.subscribe_events();
    loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = shutdown.recv() => return,
        };
        match ev {
            Ok(e) => counters.count(&e.event.kind, e.event.master.as_deref().unwrap_or_default()),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "metrics missed events")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn metrics(State(m): State<NodeMetrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
}

async fn health(State(m): State<NodeMetrics>) -> impl IntoResponse {
    // The Raft task publishes status while it runs; a closed channel means it stopped.
    if m.raft.watch_status().has_changed().is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "raft task stopped\n".to_string(),
        );
    }
    (StatusCode::OK, "ok\n".to_string())
}

async fn ready(State(m): State<NodeMetrics>) -> impl IntoResponse {
    let state = m.raft.state();
    let mut problems = Vec::new();
    if let Some((index, error)) = &m.raft.status().halted {
        problems.push(format!(
            "stopped applying at committed entry {index}, which this version cannot decode: {error}"
        ));
    }
    if !m.raft.has_leader_contact() {
        problems.push("no contact with a Raft leader".to_string());
    }
    if !state.bootstrapped {
        problems.push("cluster state not bootstrapped yet".to_string());
    }
    if problems.is_empty() {
        let body: BTreeMap<&str, String> = [
            ("leader_id", m.raft.status().leader_id.to_string()),
            ("applied_index", state.applied_index.to_string()),
        ]
        .into();
        (StatusCode::OK, format!("ready {body:?}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}

/// Serves the metrics port until shutdown.
pub async fn serve(listener: TcpListener, m: NodeMetrics, mut shutdown: Shutdown) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(m);
    let res = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await;
    if let Err(e) = res {
        warn!(error = %e, "metrics server failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::FailoverReason;
    use crate::model::Addr;

    fn record(master: &str, outcome: &str, ended: Option<u64>) -> FailoverRecord {
        FailoverRecord {
            master: master.into(),
            epoch: 1,
            reason: FailoverReason::Odown,
            from: Addr::new("127.0.0.1", 6379).unwrap(),
            candidate: None,
            leader: 1,
            started_at_ms: 1,
            promoted_at_ms: None,
            promoted_index: None,
            ended_at_ms: ended,
            outcome: outcome.into(),
        }
    }

    #[test]
    fn last_abort_per_reason_comes_from_the_history() {
        let h: VecDeque<_> = [
            record(
                "m",
                "aborted: no-good-slave: 127.0.0.1:1 replica-priority 0",
                Some(5_000),
            ),
            record("m", "aborted: no-good-slave: none", Some(7_000)),
            record("m", "aborted: slave-timeout: late", Some(6_000)),
            record("m", "aborted: something new", Some(8_000)),
            record("m", "ended", Some(9_000)),
            record("other", "aborted: not-elected", Some(9_500)),
        ]
        .into();
        assert_eq!(
            last_aborts(&h, "m"),
            [
                ("no-good-slave", 7_000),
                ("slave-timeout", 6_000),
                ("not-elected", 0),
                ("other", 8_000)
            ]
        );
    }
}
