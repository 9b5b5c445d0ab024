//! Prometheus metrics and the HTTP endpoints of the metrics port: `/metrics`, `/health`
//! (the process is alive and its Raft task runs) and `/ready` (in contact with a Raft leader,
//! so its answers can be trusted).
//!
//! Gauges are computed from the applied state, the Raft status and the monitor view at scrape
//! time; counters live in shared structures updated where things happen. No label or value
//! ever carries a secret.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::consensus::{RaftHandle, Role};
use crate::monitor::MonitorView;
use crate::shutdown::Shutdown;

type Labels = Vec<(&'static str, String)>;

/// Counters fed from applied events (every node counts the same committed events).
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Completed promotions (`+switch-master`) per master.
    pub failovers: Family<Labels, Counter>,
    /// Aborted failovers per master and reason.
    pub aborts: Family<Labels, Counter>,
    /// Times a master became objectively down.
    pub odown: Family<Labels, Counter>,
}

/// Counters of the client-facing ports, updated by the servers.
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Open connections per port.
    pub connections: Family<Labels, Gauge>,
    /// Commands or requests per port and command.
    pub commands: Family<Labels, Counter>,
    /// Error replies per port.
    pub errors: Family<Labels, Counter>,
}

impl PortCounters {
    /// A connection opened on `port`; the guard counts it closed when dropped.
    pub fn connection(self: &Arc<Self>, port: &'static str) -> ConnectionGuard {
        self.connections
            .get_or_create(&vec![("port", port.to_string())])
            .inc();
        ConnectionGuard {
            counters: self.clone(),
            port,
        }
    }

    /// One command on `port`.
    pub fn command(&self, port: &'static str, command: &str) {
        self.commands
            .get_or_create(&vec![
                ("port", port.to_string()),
                ("command", command.to_ascii_lowercase()),
            ])
            .inc();
    }

    /// One error reply on `port`.
    pub fn error(&self, port: &'static str) {
        self.errors
            .get_or_create(&vec![("port", port.to_string())])
            .inc();
    }
}

/// Decrements the connection gauge when a connection ends.
pub struct ConnectionGuard {
    counters: Arc<PortCounters>,
    port: &'static str,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.counters
            .connections
            .get_or_create(&vec![("port", self.port.to_string())])
            .dec();
    }
}

/// Everything the metrics port exposes for one node.
#[derive(Clone)]
pub struct NodeMetrics {
    raft: RaftHandle,
    monitor: watch::Receiver<Arc<MonitorView>>,
    events: Arc<EventCounters>,
    ports: Arc<PortCounters>,
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    reg.register(name, help, g);
}

impl NodeMetrics {
    /// Metrics of the node behind `raft`.
    pub fn new(
        raft: RaftHandle,
        monitor: watch::Receiver<Arc<MonitorView>>,
        ports: Arc<PortCounters>,
    ) -> Self {
        NodeMetrics {
            raft,
            monitor,
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
        let st = self.raft.status();
        let state = self.raft.state();
        let node = self.raft.node_id();
        gauge(&mut reg, "node_id", "This node's id", node as i64);
        gauge(&mut reg, "raft_term", "Current Raft term", st.term as i64);
        gauge(
            &mut reg,
            "raft_leader_id",
            "Known Raft leader (0: none)",
            st.leader_id as i64,
        );
        gauge(
            &mut reg,
            "raft_is_leader",
            "1 if this node is the Raft leader",
            i64::from(st.role == Role::Leader),
        );
        gauge(
            &mut reg,
            "raft_commit_index",
            "Raft commit index",
            st.commit as i64,
        );
        gauge(
            &mut reg,
            "raft_applied_index",
            "Last applied log index",
            st.applied as i64,
        );
        gauge(
            &mut reg,
            "raft_voters",
            "Voting members",
            st.voters.len() as i64,
        );
        gauge(
            &mut reg,
            "raft_leader_contact",
            "1 while this node is in contact with a Raft leader (its answers can be trusted)",
            i64::from(self.raft.has_leader_contact()),
        );
        gauge(
            &mut reg,
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

        let view = self.monitor.borrow().clone();
        let epoch: Family<Labels, Gauge> = Family::default();
        let odown: Family<Labels, Gauge> = Family::default();
        let down: Family<Labels, Gauge> = Family::default();
        let reachable: Family<Labels, Gauge> = Family::default();
        let replicas: Family<Labels, Gauge> = Family::default();
        let paused: Family<Labels, Gauge> = Family::default();
        let in_progress: Family<Labels, Gauge> = Family::default();
        let last: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        for m in state.masters.values() {
            let l = || vec![("master", m.name.clone())];
            epoch.get_or_create(&l()).set(m.config_epoch as i64);
            odown.get_or_create(&l()).set(i64::from(m.is_odown()));
            paused.get_or_create(&l()).set(i64::from(m.paused));
            in_progress
                .get_or_create(&l())
                .set(i64::from(m.failover.is_some() || m.reconf.is_some()));
            replicas.get_or_create(&l()).set(m.replicas.len() as i64);
            for (n, o) in &m.observations {
                down.get_or_create(&vec![("master", m.name.clone()), ("node", n.to_string())])
                    .set(i64::from(o.down));
            }
            let up = view
                .get(&m.addr)
                .is_some_and(|i| i.connected && i.sdown_since.is_none());
            reachable.get_or_create(&l()).set(i64::from(up));
            if let Some(r) = state
                .history
                .iter()
                .rev()
                .find(|r| r.master == m.name && r.promoted_at_ms.is_some())
            {
                let started = r.started_at_ms as f64;
                if let Some(p) = r.promoted_at_ms {
                    last.get_or_create(&vec![
                        ("master", m.name.clone()),
                        ("phase", "promotion".into()),
                    ])
                    .set((p as f64 - started) / 1000.0);
                }
                if let Some(e) = r.ended_at_ms {
                    last.get_or_create(&vec![
                        ("master", m.name.clone()),
                        ("phase", "total".into()),
                    ])
                    .set((e as f64 - started) / 1000.0);
                }
            }
        }
        reg.register(
            "master_config_epoch",
            "Epoch of the master's last promotion",
            epoch,
        );
        reg.register(
            "master_odown",
            "1 if the master is objectively down (quorum agrees)",
            odown,
        );
        reg.register(
            "master_down_observed",
            "Each node's latest committed observation of the master (1 = down)",
            down,
        );
        reg.register(
            "master_reachable",
            "1 if this node currently gets valid replies from the master",
            reachable,
        );
        reg.register("master_replicas", "Known replicas", replicas);
        reg.register("master_paused", "1 if automatic failover is paused", paused);
        reg.register(
            "master_failover_in_progress",
            "1 while a failover runs",
            in_progress,
        );
        reg.register(
            "master_last_failover_seconds",
            "Duration of the last failover by phase (promotion: until the address switched; total: until reconfiguration ended)",
            last,
        );
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
        reg.register(
            "port_connections",
            "Open client connections",
            self.ports.connections.clone(),
        );
        reg.register(
            "port_commands",
            "Client commands or requests",
            self.ports.commands.clone(),
        );
        reg.register(
            "port_errors",
            "Error replies sent to clients",
            self.ports.errors.clone(),
        );
        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String cannot fail");
        out
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
            Ok(e) => {
                let master = e.event.master.clone().unwrap_or_default();
                match e.event.kind.as_str() {
                    "+switch-master" => counters
                        .failovers
                        .get_or_create(&vec![("master", master)])
                        .inc(),
                    "+odown" => counters
                        .odown
                        .get_or_create(&vec![("master", master)])
                        .inc(),
                    k if k.starts_with("-failover-abort") => {
                        let reason = k
                            .trim_start_matches("-failover-abort")
                            .trim_start_matches('-');
                        let reason = if reason.is_empty() { "other" } else { reason };
                        counters
                            .aborts
                            .get_or_create(&vec![
                                ("master", master),
                                ("reason", reason.to_string()),
                            ])
                            .inc()
                    }
                    _ => 0,
                };
            }
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
