//! Monitoring of Redis instances on every node: probing, subjective down, the local view.
//!
//! - [`spawn`] starts the supervisor. It watches the applied [`ClusterState`] and keeps one
//!   probe task per instance: every monitored master, its known replicas, and the replicas
//!   the master's `INFO replication` lists. On the Raft leader it also proposes
//!   `Command::Replicas` for newly discovered replicas, so every node watches them too.
//! - `probe`: the per-instance task (PING, INFO, ROLE) that writes its entry of the
//!   [`MonitorView`] and, for the current master, proposes `Observe` on transitions.
//! - `errlog`: a repeated probe error is logged once, then counted once a minute; pure.
//! - `health`: the subjective-down rules and probe periods; pure.
//!
//! The connection and the reply parsers are in [`crate::instance`]; the view itself is in
//! [`crate::view`], so failover and the API read it without depending on this module.
//!
//! Objective down is not decided here: it is computed in the state machine from the
//! committed observations of every node.

mod errlog;
mod health;
mod hold;
mod probe;
mod tilt;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::consensus::{ProposeError, RaftHandle, Role};
use crate::fsm::{limits, ClusterState, Command};
use crate::instance::link::Connector;
use crate::model::Addr;
use crate::shutdown::Shutdown;
use crate::tuning::Tuning;
use crate::view::{MonitorView, ReportedRole, TiltView};
pub use health::{acceptable_ping_reply, Periods, Timings, INFO_PERIOD_FAST};
use probe::{Probe, ViewTx};

/// The leader proposes newly discovered replicas at most this often per master.
const REPLICAS_RETRY: Duration = Duration::from_secs(1);
/// Least time between two passes of the supervisor caused by view changes.
const VIEW_COALESCE: Duration = Duration::from_millis(100);
/// A master's INFO counts as current for forgetting replicas while younger than this.
const FORGET_INFO_FRESH: Duration = Duration::from_secs(15);

/// Starts monitoring. Returns the local view (updated by every probe), this node's TILT state
/// alone, and the supervisor task, which ends after `shutdown` once every probe has stopped.
pub fn spawn(
    raft: RaftHandle,
    tuning: Arc<Tuning>,
    connector: Connector,
    shutdown: Shutdown,
) -> (
    watch::Receiver<Arc<MonitorView>>,
    watch::Receiver<TiltView>,
    JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(Arc::new(MonitorView::default()));
    let view_tx = Arc::new(tx);
    let (tilt_tx, tilt_rx) = watch::channel(TiltView::default());
    let tilt = tilt::Tilt::new(tuning.clone());
    let watcher = tilt_watcher(tilt.clone(), tilt_tx, shutdown.clone());
    tokio::spawn(watcher.instrument(info_span!("tilt", node_id = raft.node_id())));
    let sup = Supervisor {
        raft: raft.clone(),
        tuning,
        connector,
        tilt,
        view_tx,
        probes: BTreeMap::new(),
        replicas_inflight: BTreeMap::new(),
        forget_inflight: BTreeMap::new(),
        hold_keeper: None,
        next_hold_check: Instant::now(),
        shutdown: shutdown.clone(),
    };
    let span = info_span!("monitor_supervisor", node_id = raft.node_id());
    (rx, tilt_rx, tokio::spawn(sup.run().instrument(span)))
}

struct ProbeTask {
    master: String,
    handle: JoinHandle<()>,
}

/// One `Replicas` proposal in flight per master, with the time it may be retried.
struct ReplicasProposal {
    handle: JoinHandle<Result<(), ProposeError>>,
    next_try: Instant,
}

/// Beats the TILT detector and publishes its state on its own channel.
async fn tilt_watcher(
    tilt: Arc<tilt::Tilt>,
    tilt_tx: watch::Sender<TiltView>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = tokio::time::sleep(tilt.beat_period()) => {}
        }
        tilt.beat();
        let now = TiltView {
            since: tilt.since(),
            entered: tilt.entered(),
        };
        tilt_tx.send_if_modified(|t| std::mem::replace(t, now) != now);
    }
}

struct Supervisor {
    raft: RaftHandle,
    tuning: Arc<Tuning>,
    /// Opens every Redis connection of the probes and holds (with the node's TLS material).
    connector: Connector,
    tilt: Arc<tilt::Tilt>,
    view_tx: ViewTx,
    probes: BTreeMap<Addr, ProbeTask>,
    replicas_inflight: BTreeMap<String, ReplicasProposal>,
    /// `ForgetReplicas` proposals, one per master at a time.
    forget_inflight: BTreeMap<String, ReplicasProposal>,
    /// The leader's pass over committed sync holds (see [`hold`]), one at a time.
    hold_keeper: Option<JoinHandle<()>>,
    next_hold_check: Instant,
    shutdown: Shutdown,
}

/// Every instance to watch, with the master it belongs to. A master's own address wins
/// over the same address listed as someone's replica.
pub fn instances_to_watch(state: &ClusterState, view: &MonitorView) -> BTreeMap<Addr, String> {
    let mut out = BTreeMap::new();
    for m in state.masters.values() {
        out.insert(m.addr.clone(), m.name.clone());
    }
    for m in state.masters.values() {
        for r in m
            .replicas
            .iter()
            .chain(discovered(m.addr.clone(), view).iter())
        {
            out.entry(r.clone()).or_insert_with(|| m.name.clone());
        }
    }
    out
}

/// Replicas the master at `addr` lists in its INFO, as this node last saw it.
fn discovered(addr: Addr, view: &MonitorView) -> Vec<Addr> {
    match view.get(&addr) {
        Some(i) if i.role == Some(ReportedRole::Master) => i.replicas.clone(),
        _ => Vec::new(),
    }
}

impl Supervisor {
    async fn run(mut self) {
        let mut state_rx = self.raft.watch_state();
        let mut view_rx = self.view_tx.subscribe();
        let mut shutdown = self.shutdown.clone();
        loop {
            let state = state_rx.borrow_and_update().clone();
            let view = view_rx.borrow_and_update().clone();
            self.reconcile(&state, &view).await;
            self.propose_discovered(&state, &view);
            self.propose_forgotten(&state, &view);
            self.end_sync_holds(&state);
            // Holding the view while waiting would make every probe's next write copy it.
            drop((state, view));
            let view_settled = tokio::time::sleep(VIEW_COALESCE);
            tokio::select! {
                _ = shutdown.recv() => break,
                r = state_rx.changed() => if r.is_err() { break },
                // View changes (discovered replicas) are taken in batches: each pass walks
                // every instance, and hundreds of probes write the view.
                r = async { view_settled.await; view_rx.changed().await } => if r.is_err() { break },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        // Probes see the same shutdown; wait for them so no task outlives the node.
        for (_, p) in std::mem::take(&mut self.probes) {
            let _ = p.handle.await;
        }
        for (_, r) in std::mem::take(&mut self.replicas_inflight) {
            r.handle.abort();
        }
        for (_, r) in std::mem::take(&mut self.forget_inflight) {
            r.handle.abort();
        }
        if let Some(h) = self.hold_keeper.take() {
            h.abort();
        }
        debug!("monitor stopped");
    }

    async fn reconcile(&mut self, state: &ClusterState, view: &MonitorView) {
        let want = instances_to_watch(state, view);
        let stale: Vec<Addr> = self
            .probes
            .iter()
            .filter(|(a, p)| want.get(*a) != Some(&p.master) || p.handle.is_finished())
            .map(|(a, _)| a.clone())
            .collect();
        for addr in stale {
            let p = self.probes.remove(&addr).expect("listed above");
            p.handle.abort();
            // Wait for the abort, so the stopped probe cannot write its entry after removal.
            let _ = p.handle.await;
            self.view_tx.send_if_modified(|v| {
                if v.instances.contains_key(&addr) {
                    Arc::make_mut(v).instances.remove(&addr);
                    true
                } else {
                    false
                }
            });
            debug!(addr = %addr, "stopped watching");
        }
        for (addr, master) in want {
            if self.probes.contains_key(&addr) {
                continue;
            }
            info!(master = %master, addr = %addr, "watching instance");
            let probe = Probe::new(
                addr.clone(),
                master.clone(),
                self.raft.clone(),
                self.view_tx.clone(),
                self.tilt.clone(),
                self.tuning.clone(),
                self.connector.clone(),
            );
            let span = info_span!("monitor", master = %master, addr = %addr);
            let handle = tokio::spawn(probe.run(self.shutdown.clone()).instrument(span));
            self.probes.insert(addr, ProbeTask { master, handle });
        }
    }

    /// On the leader, about once a second while holds are recorded: restore the settings of
    /// instances whose hold ended, whoever set it.
    fn end_sync_holds(&mut self, state: &ClusterState) {
        if self.hold_keeper.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let now = Instant::now();
        if state.sync_holds.is_empty()
            || now < self.next_hold_check
            || self.raft.status().role != Role::Leader
        {
            return;
        }
        self.next_hold_check = now + Duration::from_secs(1);
        let span = info_span!("sync_hold_keeper");
        self.hold_keeper = Some(tokio::spawn(
            hold::restore_ended_holds(self.raft.clone(), self.connector.clone()).instrument(span),
        ));
    }

    /// On the leader: forget known replicas that have been subjectively down for the master's
    /// `replica_forget_after_ms` and that the master, answering right now, does not list.
    /// Without a fresh INFO from the master nothing is forgotten: absence cannot be told.
    fn propose_forgotten(&mut self, state: &ClusterState, view: &MonitorView) {
        let now = Instant::now();
        self.forget_inflight
            .retain(|_, p| !p.handle.is_finished() || p.next_try > now);
        if self.raft.status().role != Role::Leader {
            return;
        }
        for m in state.masters.values() {
            if m.replica_forget_after_ms == 0 || self.forget_inflight.contains_key(&m.name) {
                continue;
            }
            let Some(mi) = view.get(&m.addr) else {
                continue;
            };
            let fresh = mi
                .info_refresh
                .is_some_and(|t| t.elapsed() < FORGET_INFO_FRESH);
            if mi.role != Some(ReportedRole::Master)
                || !mi.connected
                || mi.sdown_since.is_some()
                || !fresh
            {
                continue;
            }
            let after = Duration::from_millis(m.replica_forget_after_ms);
            let gone: Vec<Addr> = m
                .replicas
                .iter()
                .filter(|r| !mi.replicas.contains(r))
                .filter(|r| {
                    view.get(r)
                        .and_then(|i| i.sdown_since)
                        .is_some_and(|t| t.elapsed() >= after)
                })
                .cloned()
                .collect();
            if gone.is_empty() {
                continue;
            }
            info!(master = %m.name, replicas = ?gone, after_ms = m.replica_forget_after_ms,
                "forgetting replicas unreachable and not listed by their master");
            let raft = self.raft.clone();
            let cmd = Command::ForgetReplicas {
                master: m.name.clone(),
                replicas: gone,
            };
            let handle = tokio::spawn(
                async move {
                    let r = raft.propose(cmd).await.map(|_| ());
                    if let Err(e) = &r {
                        warn!(error = %e, "could not commit forgotten replicas");
                    }
                    r
                }
                .in_current_span(),
            );
            self.forget_inflight.insert(
                m.name.clone(),
                ReplicasProposal {
                    handle,
                    next_try: now + REPLICAS_RETRY,
                },
            );
        }
    }

    /// On the leader: commit replicas seen in a master's INFO that the state does not know,
    /// so every node watches them and failover can consider them.
    fn propose_discovered(&mut self, state: &ClusterState, view: &MonitorView) {
        let now = Instant::now();
        self.replicas_inflight
            .retain(|_, p| !p.handle.is_finished() || p.next_try > now);
        if self.raft.status().role != Role::Leader {
            return;
        }
        for m in state.masters.values() {
            let known: BTreeSet<&Addr> = m.replicas.iter().collect();
            // The state records at most MAX_REPLICAS per master and no over-long host;
            // proposing more would only be ignored, again every second.
            let room = limits::MAX_REPLICAS.saturating_sub(m.replicas.len());
            let new: Vec<Addr> = discovered(m.addr.clone(), view)
                .into_iter()
                .filter(|r| !known.contains(r) && *r != m.addr)
                .filter(limits::addr_within_limits)
                .take(room)
                .collect();
            if new.is_empty() || self.replicas_inflight.contains_key(&m.name) {
                continue;
            }
            info!(master = %m.name, replicas = ?new, "proposing discovered replicas");
            let raft = self.raft.clone();
            let cmd = Command::Replicas {
                master: m.name.clone(),
                replicas: new,
            };
            let handle = tokio::spawn(
                async move {
                    let r = raft.propose(cmd).await.map(|_| ());
                    if let Err(e) = &r {
                        warn!(error = %e, "could not commit discovered replicas");
                    }
                    r
                }
                .in_current_span(),
            );
            self.replicas_inflight.insert(
                m.name.clone(),
                ReplicasProposal {
                    handle,
                    next_try: now + REPLICAS_RETRY,
                },
            );
        }
    }
}
