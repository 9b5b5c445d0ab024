//! The one task that owns `raft::RawNode`.
//!
//! It selects over ticks and its mailbox (peer messages, proposals, reads, conf changes,
//! transfer requests, transport reports) and handles `Ready` in the order raft-rs documents:
//! send messages → install snapshot → apply committed entries → persist entries and hard
//! state → release reads → send persisted messages → advance → handle the `LightReady`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raft::{RawNode, ReadState, SnapshotStatus, StateRole};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, error, info, warn};

use super::codec;
use super::contact::LeaderContact;
use super::handle::RaftHandle;
use super::mailbox::{self, BootDecision, Mailbox, MailboxReceiver, NodeMsg, ProposeError};
use super::status::{AppliedEvent, Membership, PeerProgress, RaftStatus, Role};
use super::storage::{AppliedState, DiskStore, Recovered, StoreError, VoteGuard};
use super::transport::Transport;
use crate::fsm::{
    ClusterState, Command, MasterSpec, MemberInfo, Outcome, BATCH_VERSION, MAX_BATCH,
};
use crate::model::NodeId;
use crate::shutdown::Shutdown;

/// Capacity of the applied-event broadcast; slow subscribers lag and resync from the state.
const EVENT_CAPACITY: usize = 4096;

/// Settings of one node's consensus task.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election.
    pub election_ticks: usize,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: usize,
    /// Compact the log when it holds more entries than this.
    pub compact_threshold: u64,
    /// Masters proposed once when the cluster first forms (the config's `[[masters]]`).
    pub bootstrap_masters: Vec<MasterSpec>,
    /// What this node announces about itself.
    pub self_info: MemberInfo,
    /// Peer addresses from the config (used until the state machine knows better).
    pub configured_peers: BTreeMap<NodeId, String>,
}

impl NodeConfig {
    /// Election timeout in wall time.
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks as u32
    }

    /// How long a quorum confirmation (a completed ReadIndex round) lets this node vouch for
    /// the leader it confirmed, counted from when the round was started. A voter that
    /// answered the round refuses to vote (check-quorum lease) until `election_ticks` of its
    /// own ticks have passed since; the first of those may come right away, and after a
    /// stall one more comes early (missed ticks are delayed, not burst): two ticks spare.
    pub fn lease(&self) -> Duration {
        self.tick * self.election_ticks.saturating_sub(2).max(1) as u32
    }
}

/// How a node that starts on an empty data dir comes into a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// Write the initial configuration with these voters now (nothing happens on a store
    /// that is not empty). An empty list means [`Boot::Join`].
    Now(Vec<NodeId>),
    /// Wait to be added or re-admitted; no vote until then (see [`VoteGuard`]).
    Join,
    /// Wait for a [`BootDecision`] (sent with [`RaftHandle::decide_boot`]); until then every
    /// Raft message is dropped, so nothing from an existing cluster lands in the store
    /// before the decision.
    Decide,
}

enum Waiter {
    Propose(oneshot::Sender<Result<Outcome, ProposeError>>),
    Conf(oneshot::Sender<Result<(), ProposeError>>),
}

impl Waiter {
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Propose(tx) => tx.is_closed(),
            Waiter::Conf(tx) => tx.is_closed(),
        }
    }
    fn fail(self, e: ProposeError) {
        match self {
            Waiter::Propose(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiter::Conf(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// The node task's state, grouped by role (as etcd's raftexample does).
pub struct RaftNode {
    // inputs and outputs
    rx: mpsc::Receiver<NodeMsg>,
    state_tx: watch::Sender<Arc<ClusterState>>,
    status_tx: watch::Sender<Arc<RaftStatus>>,
    events_tx: broadcast::Sender<AppliedEvent>,
    // identity and settings
    cfg: NodeConfig,
    // consensus and its backing
    raw: RawNode<DiskStore>,
    store: DiskStore,
    cs: ConfState,
    state: ClusterState,
    transport: Box<dyn Transport>,
    // requests in flight
    /// Proposal ids carry this node's id and a sequence that starts at a random value, so an
    /// entry proposed by an earlier incarnation never resolves a new waiter.
    next_seq: u64,
    /// Pending proposals with the leader they were proposed under.
    waiters: HashMap<u64, (NodeId, Waiter)>,
    reads: HashMap<u64, oneshot::Sender<Result<u64, ProposeError>>>,
    parked_reads: Vec<(u64, oneshot::Sender<Result<u64, ProposeError>>)>,
    /// Proposals taken from the mailbox and not yet handed to Raft: those of one burst go
    /// out together, batchable ones in one entry (see [`Self::flush_proposals`]).
    pending: Vec<(Command, oneshot::Sender<Result<Outcome, ProposeError>>)>,
    // liveness bookkeeping
    last_heard: HashMap<NodeId, Instant>,
    /// Sentinel address set at run time (`SENTINEL CONFIG SET announce-ip/announce-port`),
    /// announced instead of the configured one.
    sentinel_addr: Arc<parking_lot::Mutex<Option<String>>>,
    /// The lease: quorum confirmations of the leader (see [`LeaderContact`]).
    contact: LeaderContact,
    /// The term the confirmations were made in.
    last_term: u64,
    last_self_tasks: Option<Instant>,
    last_role: StateRole,
    last_leader: NodeId,
    // empty-store handling
    /// Started with [`Boot::Decide`] and no decision yet: Raft messages are dropped.
    boot_pending: bool,
    /// See [`VoteGuard`].
    guard: VoteGuard,
    /// The guard changed in memory and is saved with the next batch.
    guard_dirty: bool,
    last_guard_warning: Option<Instant>,
    /// A committed entry this node cannot decode: (index, error). Applying stops there for
    /// good (until a binary that reads it restarts on this data dir); never skipped.
    halted: Option<(u64, String)>,
    last_halt_report: Option<Instant>,
    /// Entries up to this index that are applied at start are applied again: the state is
    /// saved only at checkpoints (see `storage`). Their events were published before the
    /// restart and are not published twice.
    replay_upto: u64,
}

/// The node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Raft refused the configuration or the stored state.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The node's thread could not be started.
    #[error("cannot start the Raft node thread: {0}")]
    Thread(std::io::Error),
}

impl RaftNode {
    /// Creates the mailbox a transport needs before the node exists.
    pub fn mailbox() -> (Mailbox, MailboxReceiver) {
        mailbox::channel()
    }

    /// Builds the node from an opened store and starts its task. `bootstrap_voters` is
    /// non-empty only for an initial member starting on a fresh store (see [`Boot`]).
    pub fn start(
        cfg: NodeConfig,
        store: DiskStore,
        recovered: Recovered,
        bootstrap_voters: &[NodeId],
        mailbox: (Mailbox, MailboxReceiver),
        transport: Box<dyn Transport>,
        shutdown: Shutdown,
    ) -> Result<(RaftHandle, tokio::task::JoinHandle<()>), StartError> {
        let boot = if bootstrap_voters.is_empty() {
            Boot::Join
        } else {
            Boot::Now(bootstrap_voters.to_vec())
        };
        Self::start_with(cfg, store, recovered, boot, mailbox, transport, shutdown)
    }

    /// [`Self::start`] with an explicit [`Boot`] mode for an empty store.
    pub fn start_with(
        cfg: NodeConfig,
        store: DiskStore,
        recovered: Recovered,
        boot: Boot,
        mailbox: (Mailbox, MailboxReceiver),
        transport: Box<dyn Transport>,
        shutdown: Shutdown,
    ) -> Result<(RaftHandle, tokio::task::JoinHandle<()>), StartError> {
        let mut state = recovered.state;
        let mut applied = recovered.applied;
        let mut guard = recovered.vote_guard;
        let mut boot_pending = false;
        if recovered.fresh {
            match boot {
                Boot::Now(voters) if !voters.is_empty() => {
                    state = bootstrap_store(&cfg, &store, &voters)?;
                    applied = store.applied();
                    guard = VoteGuard::default();
                }
                Boot::Now(_) | Boot::Join => guard.awaiting = true,
                Boot::Decide => boot_pending = true,
            }
            if guard != recovered.vote_guard {
                store.save_vote_guard(guard)?;
            }
        }
        let rcfg = raft_config(&cfg, applied);
        rcfg.validate()?;
        let logger = super::raft_logger(cfg.id);
        let cs = store.conf_state();
        let raw = RawNode::new(&rcfg, store.clone(), &logger)?;
        let (state_tx, state_rx) = watch::channel(Arc::new(state.clone()));
        let status_tx = watch::Sender::new(Arc::new(RaftStatus::default()));
        let (events_tx, _) = broadcast::channel(EVENT_CAPACITY);
        let sentinel_addr = Arc::new(parking_lot::Mutex::new(None));
        let epoch_start = Instant::now();
        let contact = LeaderContact::new(epoch_start, cfg.lease());
        let (mailbox, MailboxReceiver(rx)) = mailbox;
        let handle = RaftHandle {
            id: cfg.id,
            tx: mailbox.tx.clone(),
            state: state_rx,
            status: status_tx.subscribe(),
            events: events_tx.clone(),
            contact: contact.reader(),
            sentinel_addr: sentinel_addr.clone(),
            epoch_start,
            election_timeout: cfg.election_timeout(),
            stats: Arc::default(),
        };
        let node = RaftNode {
            rx,
            state_tx,
            status_tx,
            events_tx,
            raw,
            store,
            cs,
            state,
            transport,
            next_seq: rand::random::<u32>() as u64,
            waiters: HashMap::new(),
            reads: HashMap::new(),
            parked_reads: Vec::new(),
            pending: Vec::new(),
            last_heard: HashMap::new(),
            sentinel_addr,
            contact,
            last_term: 0,
            last_self_tasks: None,
            last_role: StateRole::Follower,
            last_leader: 0,
            boot_pending,
            guard,
            guard_dirty: false,
            last_guard_warning: None,
            halted: None,
            last_halt_report: None,
            replay_upto: recovered.commit,
            cfg,
        };
        node.publish_status();
        let task = node.spawn_thread(shutdown)?;
        Ok((handle, task))
    }

    /// Runs the node on its own thread and runtime: client load on the shared runtime
    /// (thousands of connections, pipelines) cannot delay its ticks, heartbeats or message
    /// handling, and its fsyncs block only this thread, never an async worker. The peer
    /// senders it spawns run there too. The returned task ends when the node does.
    fn spawn_thread(self, shutdown: Shutdown) -> Result<tokio::task::JoinHandle<()>, StartError> {
        let id = self.cfg.id;
        let span = tracing::info_span!("node", node_id = id);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("raft-node-{id}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime can be built");
                rt.block_on(tracing::Instrument::instrument(
                    async move {
                        self.update_peers();
                        self.run(shutdown).await
                    },
                    span,
                ));
                // Dropping the runtime stops what the node spawned (peer senders).
                drop(rt);
                let _ = done_tx.send(());
            })
            .map_err(StartError::Thread)?;
        Ok(tokio::spawn(tracing::Instrument::instrument(
            async move {
                if done_rx.await.is_err() {
                    // The thread ended without finishing the node: it panicked. Surface it
                    // the way a panicking task would.
                    panic!("the Raft node thread panicked");
                }
            },
            tracing::info_span!("node_thread", node_id = id),
        )))
    }

    async fn run(mut self, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(self.cfg.tick);
        // Missed ticks after a stall must not burst: a burst fires elections early.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    // A node that must not vote must not campaign either: without ticks a
                    // follower never starts an election. A halted leader keeps ticking
                    // (heartbeats, the end of a leadership transfer) but never campaigns again.
                    let halted_follower =
                        self.halted.is_some() && self.raw.raft.state != StateRole::Leader;
                    if !self.boot_pending && !self.guard.awaiting && !halted_follower {
                        self.raw.tick();
                    }
                    self.on_tick();
                }
                msg = self.rx.recv() => match msg {
                    Some(m) => {
                        self.handle_msg(m);
                        // Drain what else is queued so one Ready covers a burst.
                        for _ in 0..256 {
                            match self.rx.try_recv() {
                                Ok(m) => self.handle_msg(m),
                                Err(_) => break,
                            }
                        }
                        self.flush_proposals();
                    }
                    None => break,
                },
                _ = shutdown.recv() => break,
            }
            if let Err(e) = self.on_ready() {
                // Storage failure: continuing could acknowledge what is not durable.
                error!(error = %e, "raft storage failed; stopping this node");
                break;
            }
            self.publish_status();
        }
        for (_, (_, w)) in self.waiters.drain() {
            w.fail(ProposeError::Shutdown);
        }
        // A clean restart need not apply the log again.
        if self.halted.is_none() && self.state.applied_index > self.store.applied() {
            if let Err(e) = self.checkpoint(None) {
                warn!(error = %e, "cannot save the state machine at shutdown; the next start applies the log again");
            }
        }
        info!("raft node stopped");
    }

    fn handle_msg(&mut self, msg: NodeMsg) {
        match msg {
            NodeMsg::Step(m) => {
                if self.boot_pending {
                    return; // nothing lands in the store before the boot decision
                }
                if let Some(why) = self.refuses(&m) {
                    debug!(peer_id = m.from, term = m.term, msg_type = ?m.get_msg_type(), why, "not voting");
                    return;
                }
                if !self.accepts_from(m.from) {
                    warn!(
                        peer_id = m.from,
                        "dropping raft message from a node that is not a member"
                    );
                    return;
                }
                let from = m.from;
                if m.get_msg_type() != MessageType::MsgTransferLeader {
                    self.last_heard.insert(from, Instant::now());
                }
                if let Err(e) = self.raw.step(m) {
                    debug!(peer_id = from, error = %e, "step failed");
                }
            }
            NodeMsg::Propose { cmd, reply } => self.pending.push((cmd, reply)),
            NodeMsg::ProposeAll { cmds } => self.pending.extend(cmds),
            NodeMsg::ConfChange { cc, reply } => {
                let joint = !self.cs.voters_outgoing.is_empty();
                let busy = self.raw.raft.has_pending_conf() || (joint && !cc.changes.is_empty());
                if self.raw.raft.state == StateRole::Leader && busy {
                    // raft-rs would append it as an empty entry: nobody would answer.
                    let _ = reply.send(Err(ProposeError::MembershipBusy));
                    return;
                }
                let id = self.next_id();
                let ctx = self.ctx_bytes(id);
                match self.raw.propose_conf_change(ctx, cc) {
                    Ok(()) => {
                        let leader = self.raw.raft.leader_id;
                        self.waiters.insert(id, (leader, Waiter::Conf(reply)));
                    }
                    Err(e) => {
                        let err = match e {
                            raft::Error::ProposalDropped => self.not_leader(),
                            other => ProposeError::Invalid(other.to_string()),
                        };
                        let _ = reply.send(Err(err));
                    }
                }
            }
            NodeMsg::ReadIndex { reply } => {
                // Raft drops read requests silently without a leader: fail fast instead.
                if self.raw.raft.leader_id == 0 {
                    let _ = reply.send(Err(self.not_leader()));
                    return;
                }
                let id = self.next_id();
                self.raw.read_index(self.ctx_bytes(id));
                self.reads.insert(id, reply);
            }
            NodeMsg::TransferLeader(to) => self.raw.transfer_leader(to),
            NodeMsg::Unreachable(id) => self.raw.report_unreachable(id),
            NodeMsg::SnapshotStatus(id, ok) => {
                let st = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(id, st);
            }
            NodeMsg::Boot(d) => self.on_boot_decision(d),
        }
    }

    /// Hands the proposals of one mailbox burst to Raft, in the order they came. Once every
    /// member reads [`Command::Batch`], consecutive batchable ones (observations and
    /// failover decisions, see [`Command::batchable`]) share one entry: when many masters
    /// fail at once, their commands cost one append, one fsync and one apply pass rather
    /// than one each. Waiting for more is never done: only what is already queued is joined.
    fn flush_proposals(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batching = self.state.cluster_version() >= BATCH_VERSION;
        let mut group = Vec::new();
        for (cmd, reply) in std::mem::take(&mut self.pending) {
            if let Err(e) = self.format_allowed(&cmd) {
                let _ = reply.send(Err(e));
                continue;
            }
            if batching && cmd.batchable() {
                group.push((cmd, reply));
                if group.len() == MAX_BATCH {
                    self.propose_group(std::mem::take(&mut group));
                }
                continue;
            }
            self.propose_group(std::mem::take(&mut group));
            self.propose_group(vec![(cmd, reply)]);
        }
        self.propose_group(group);
    }

    /// Proposes one entry: the command alone, or a [`Command::Batch`] of several whose
    /// context lists every proposal id in order.
    fn propose_group(
        &mut self,
        mut group: Vec<(Command, oneshot::Sender<Result<Outcome, ProposeError>>)>,
    ) {
        let (data, ids, replies) = match group.len() {
            0 => return,
            1 => {
                let (cmd, reply) = group.pop().expect("one");
                (cmd.encode(), vec![self.next_id()], vec![reply])
            }
            _ => {
                let mut commands = Vec::with_capacity(group.len());
                let mut ids = Vec::with_capacity(group.len());
                let mut replies = Vec::with_capacity(group.len());
                for (cmd, reply) in group {
                    commands.push(cmd);
                    ids.push(self.next_id());
                    replies.push(reply);
                }
                (Command::Batch { commands }.encode(), ids, replies)
            }
        };
        let mut ctx = Vec::with_capacity(8 + 8 * ids.len());
        ctx.extend_from_slice(&self.cfg.id.to_be_bytes());
        for id in &ids {
            ctx.extend_from_slice(&id.to_be_bytes());
        }
        match self.raw.propose(ctx, data) {
            Ok(()) => {
                let leader = self.raw.raft.leader_id;
                for (id, reply) in ids.into_iter().zip(replies) {
                    self.waiters.insert(id, (leader, Waiter::Propose(reply)));
                }
            }
            Err(_) => {
                for reply in replies {
                    let _ = reply.send(Err(self.not_leader()));
                }
            }
        }
    }

    /// A command whose format some member may not read is never written: it would halt
    /// that member (see [`Self::apply_entries`]).
    fn format_allowed(&self, cmd: &Command) -> Result<(), ProposeError> {
        let v = cmd.format_version();
        let allowed = match cmd {
            // Raising the version needs every member to read the new one.
            Command::ClusterVersion { .. } => self.state.members_version(),
            _ => self.state.cluster_version(),
        };
        if v > allowed || v > crate::fsm::SUPPORTED_VERSION {
            return Err(ProposeError::Invalid(format!(
                "{} needs command format {v}, but the cluster is at format {} (every member \
                 must run a version that reads it first)",
                cmd.kind(),
                self.state.cluster_version()
            )));
        }
        Ok(())
    }

    /// Why a vote request (or a request to campaign) is refused under the vote guard.
    fn refuses(&self, m: &Message) -> Option<&'static str> {
        match m.get_msg_type() {
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote => {
                if self.guard.awaiting {
                    Some("data dir was empty and this node is not re-admitted yet")
                } else if m.term <= self.guard.floor {
                    Some("term not after the one this node was re-admitted in")
                } else {
                    None
                }
            }
            MessageType::MsgTimeoutNow if self.guard.awaiting => {
                Some("data dir was empty and this node is not re-admitted yet")
            }
            MessageType::MsgTimeoutNow if self.halted.is_some() => {
                Some("this node stopped applying at an entry it cannot decode")
            }
            _ => None,
        }
    }

    fn on_boot_decision(&mut self, d: BootDecision) {
        if !self.boot_pending {
            return;
        }
        self.boot_pending = false;
        let fresh = self.cs.voters.is_empty() && self.cs.learners.is_empty();
        let res = match d {
            BootDecision::Bootstrap(voters) if fresh && !voters.is_empty() => {
                self.bootstrap_now(&voters)
            }
            BootDecision::Bootstrap(_) => Ok(()),
            BootDecision::Join { awaiting } => {
                self.guard.awaiting = awaiting;
                self.store.save_vote_guard(self.guard)
            }
        };
        if let Err(e) = res {
            // Leaves the node pending: it keeps dropping messages rather than run on a store
            // in an unknown state.
            error!(error = %e, "cannot write the boot decision; this node stays out of the cluster");
            self.boot_pending = true;
        }
    }

    fn bootstrap_now(&mut self, voters: &[NodeId]) -> Result<(), StoreError> {
        let state = bootstrap_store(&self.cfg, &self.store, voters)?;
        self.guard = VoteGuard::default();
        self.store.save_vote_guard(self.guard)?;
        let rcfg = raft_config(&self.cfg, self.store.applied());
        let logger = super::raft_logger(self.cfg.id);
        self.raw =
            RawNode::new(&rcfg, self.store.clone(), &logger).map_err(|e| StoreError::Corrupt {
                path: Default::default(),
                what: format!("raft refused the bootstrapped store: {e}"),
            })?;
        self.cs = self.store.conf_state();
        self.state = state;
        self.state_tx.send_replace(Arc::new(self.state.clone()));
        self.update_peers();
        Ok(())
    }

    /// Re-admission under the vote guard: seen as a learner, then as a voter.
    fn observe_membership(&mut self) {
        if !self.guard.awaiting {
            return;
        }
        let me = self.cfg.id;
        let learner = self.cs.learners.contains(&me) || self.cs.learners_next.contains(&me);
        let voter = self.cs.voters.contains(&me);
        if learner && !voter && !self.guard.seen_learner {
            self.guard.seen_learner = true;
            self.guard_dirty = true;
        } else if voter && self.guard.seen_learner {
            self.guard = VoteGuard {
                awaiting: false,
                seen_learner: false,
                floor: self.raw.raft.term,
            };
            self.guard_dirty = true;
            info!(
                term = self.guard.floor,
                "re-admitted as a voter; votes for terms up to this one stay refused"
            );
        }
    }

    /// See [`Membership::accepts_from`]: the peer port applies the same rule to the status.
    fn accepts_from(&self, from: NodeId) -> bool {
        Membership::of(&self.cs).accepts_from(from, self.cfg.configured_peers.contains_key(&from))
    }

    fn next_id(&mut self) -> u64 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    fn ctx_bytes(&self, seq: u64) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&self.cfg.id.to_be_bytes());
        v.extend_from_slice(&seq.to_be_bytes());
        v
    }

    /// The proposal ids in an entry's context (one per command of a batch), if this node
    /// proposed it; empty otherwise.
    fn own_ids(&self, ctx: &[u8]) -> Vec<u64> {
        if ctx.len() < 16 || !ctx.len().is_multiple_of(8) || ctx[..8] != self.cfg.id.to_be_bytes() {
            return Vec::new();
        }
        ctx[8..]
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }

    /// The proposal id of a single-command entry, if this node proposed it.
    fn own_id(&self, ctx: &[u8]) -> Option<u64> {
        match self.own_ids(ctx)[..] {
            [id] => Some(id),
            _ => None,
        }
    }

    fn not_leader(&self) -> ProposeError {
        let leader = self.raw.raft.leader_id;
        ProposeError::NotLeader {
            leader: (leader != 0).then_some(leader),
        }
    }

    fn on_tick(&mut self) {
        // Callers time out on their own; drop waiters nobody listens to any more.
        self.waiters.retain(|_, (_, w)| !w.is_closed());
        self.reads.retain(|_, r| !r.is_closed());
        self.parked_reads.retain(|(_, r)| !r.is_closed());

        if self.halted.is_some() {
            self.while_halted();
        } else {
            self.resync();
        }
        self.self_tasks();
        if self.guard.awaiting
            && self
                .last_guard_warning
                .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
        {
            self.last_guard_warning = Some(Instant::now());
            warn!(
                node_id = self.cfg.id,
                "this node started on an empty data dir in an existing cluster; it does not vote \
                 until it is re-admitted: run `raft-sentinel ctl replace-node --id {}` (or \
                 `ctl add-node` if it is not a member)",
                self.cfg.id
            );
        }
    }

    /// A halted node vouches for nothing, hands leadership away, and says why periodically.
    fn while_halted(&mut self) {
        self.contact.reset();
        let Some((index, error)) = self.halted.clone() else {
            return;
        };
        let due = self
            .last_halt_report
            .is_none_or(|t| t.elapsed() > self.cfg.election_timeout().max(Duration::from_secs(10)));
        if !due {
            return;
        }
        self.last_halt_report = Some(Instant::now());
        error!(
            index,
            error = %error,
            "stopped applying at committed entry {index}, which this version cannot decode; \
             not serving master addresses. Upgrade this node to a version that reads it"
        );
        if self.raw.raft.state == StateRole::Leader {
            let me = self.cfg.id;
            let to = self
                .raw
                .raft
                .prs()
                .iter()
                .filter(|(id, _)| **id != me && self.cs.voters.contains(id))
                .max_by_key(|(_, p)| p.matched)
                .map(|(id, _)| *id);
            if let Some(to) = to {
                warn!(
                    to,
                    "handing leadership away: this node cannot apply the log"
                );
                self.raw.transfer_leader(to);
            }
        }
    }

    /// Keeps the lease (see [`LeaderContact`]): starts a confirmation round when one is due.
    fn resync(&mut self) {
        if self.raw.raft.lead_transferee.is_some() {
            self.contact.transferring();
            return;
        }
        let now = Instant::now();
        if self.contact.tick(now, self.raw.raft.leader_id != 0) {
            let id = self.next_id();
            self.raw.read_index(self.ctx_bytes(id));
            self.contact.started(id, now);
        }
    }

    /// Periodic duties proposed through the log: bootstrap the masters once, announce this
    /// node's addresses, and leave a joint configuration a previous leader left behind.
    fn self_tasks(&mut self) {
        let now = Instant::now();
        if self
            .last_self_tasks
            .is_some_and(|t| now - t < self.cfg.election_timeout())
        {
            return;
        }
        if self.raw.raft.leader_id == 0 {
            return;
        }
        self.last_self_tasks = Some(now);
        let leader = self.raw.raft.state == StateRole::Leader;
        if leader && !self.state.bootstrapped {
            let cmd = Command::Bootstrap {
                masters: self.cfg.bootstrap_masters.clone(),
            };
            let _ = self.raw.propose(Vec::new(), cmd.encode());
        }
        let announced = self.state.members.get(&self.cfg.id).map(|m| &m.info);
        let mut mine = self.cfg.self_info.clone();
        if let Some(a) = self.sentinel_addr.lock().clone() {
            mine.sentinel_addr = Some(a);
        }
        if mine.peer_addr.is_none() {
            mine.peer_addr = announced.and_then(|i| i.peer_addr.clone());
        }
        if announced.is_some_and(|a| *a != mine) {
            let cmd = Command::Announce {
                node: self.cfg.id,
                info: mine,
            };
            let _ = self.raw.propose(Vec::new(), cmd.encode());
        }
        // Every member reads a newer command format: commit it, so new command types may
        // be written from then on.
        let target = self
            .state
            .members_version()
            .min(crate::fsm::SUPPORTED_VERSION);
        if leader && target > self.state.cluster_version() {
            info!(
                version = target,
                "every member reads a newer command format: raising the cluster version"
            );
            let cmd = Command::ClusterVersion { version: target };
            let _ = self.raw.propose(Vec::new(), cmd.encode());
        }
        if leader
            && !self.cs.voters_outgoing.is_empty()
            && self.raw.raft.pending_conf_index <= self.state.applied_index
        {
            info!("leaving a joint configuration left by an earlier leader");
            let _ = self
                .raw
                .propose_conf_change(Vec::new(), ConfChangeV2::default());
        }
    }

    fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut rd = self.raw.ready();
        // 1. Leader messages may go out before its own append is durable (thesis 10.2.1).
        self.send(rd.take_messages());
        // 2. Snapshot from the leader: persist atomically, then restore the state machine.
        if !rd.snapshot().is_empty() {
            self.install_snapshot(rd.snapshot().clone())?;
        }
        // 3. Committed entries (0.7 only hands out persisted ones), in memory for now.
        let committed = rd.take_committed_entries();
        let batch = self.apply_entries(committed);
        // 4. Entries and hard state in one fsync'd transaction, durable before anything
        //    acknowledges them. The applied state stays in memory until the next checkpoint:
        //    the entries it was built from are durable (a proposal reported applied survives a
        //    crash; the log is applied again from the last checkpoint).
        self.store
            .save(rd.entries(), rd.hs(), self.applied_state(&batch))?;
        self.finish(batch)?;
        // 5. Reads whose index is now known.
        let read_states = rd.take_read_states();
        self.on_read_states(read_states);
        // 6. Votes and append responses only after step 4.
        self.send(rd.take_persisted_messages());
        // 7. Advance and handle what became valid because of the persist.
        let mut light = self.raw.advance(rd);
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        let batch = self.apply_entries(committed);
        self.store.save(&[], None, self.applied_state(&batch))?;
        self.finish(batch)?;
        self.raw.advance_apply();
        self.after_ready();
        Ok(())
    }

    fn send(&mut self, msgs: Vec<Message>) {
        if !msgs.is_empty() {
            self.transport.send(msgs);
        }
    }

    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), StoreError> {
        let md = snap.get_metadata().clone();
        info!(
            index = md.index,
            term = md.term,
            "installing snapshot from leader"
        );
        self.store.install_snapshot(&snap)?;
        self.state = ClusterState::from_bytes(&snap.data).map_err(|e| StoreError::Corrupt {
            path: Default::default(),
            what: e.to_string(),
        })?;
        self.cs = md.get_conf_state().clone();
        self.observe_membership();
        self.save_guard()?;
        self.state_tx.send_replace(Arc::new(self.state.clone()));
        self.update_peers();
        self.release_reads();
        Ok(())
    }

    /// Applies committed entries to the in-memory state machine. Nothing is published or
    /// answered until the batch is durable ([`Self::finish`]).
    fn apply_entries(&mut self, entries: Vec<Entry>) -> ApplyBatch {
        let mut batch = ApplyBatch::default();
        let start = self.state.applied_index;
        let ApplyBatch {
            resolved,
            events,
            membership_changed,
            checkpoint,
            ..
        } = &mut batch;
        for e in entries {
            if self.halted.is_some() {
                break; // never past an entry this node cannot read
            }
            if e.index <= self.state.applied_index {
                continue; // re-delivered after a restart: already in the applied state
            }
            if e.index != self.state.applied_index + 1 {
                panic!(
                    "apply gap: entry {} after applied {}",
                    e.index, self.state.applied_index
                );
            }
            let own = self.own_id(&e.context);
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => self.state.skip(e.index),
                EntryType::EntryNormal => match Command::decode(&e.data) {
                    Ok(Command::Batch { commands }) => {
                        *checkpoint |= commands.iter().any(|c| {
                            matches!(
                                c,
                                Command::Announce { .. }
                                    | Command::ClusterVersion { .. }
                                    | Command::Bootstrap { .. }
                            )
                        });
                        let results = self.state.apply_batch(e.index, &commands);
                        // The ids match the commands one to one; anything else is not ours.
                        let ids = self.own_ids(&e.context);
                        let ids = if ids.len() == results.len() {
                            ids
                        } else {
                            Vec::new()
                        };
                        let mut ids = ids.into_iter();
                        for (cmd, applied) in commands.iter().zip(results) {
                            if let Err(rej) = &applied.result {
                                debug!(index = e.index, op = cmd.kind(), reason = %rej, "command rejected");
                            }
                            events.extend(applied.events.into_iter().map(|ev| (e.index, ev)));
                            if let Some(id) = ids.next() {
                                resolved.push((id, applied.result.map_err(ProposeError::Rejected)));
                            }
                        }
                    }
                    Ok(cmd) => {
                        *checkpoint |= matches!(
                            cmd,
                            Command::Announce { .. }
                                | Command::ClusterVersion { .. }
                                | Command::Bootstrap { .. }
                        );
                        let applied = self.state.apply(e.index, &cmd);
                        if let Err(rej) = &applied.result {
                            debug!(index = e.index, op = cmd.kind(), reason = %rej, "command rejected");
                        }
                        events.extend(applied.events.into_iter().map(|ev| (e.index, ev)));
                        if let Some(id) = own {
                            resolved.push((id, applied.result.map_err(ProposeError::Rejected)));
                        }
                    }
                    Err(err) => {
                        // Skipping would make this state machine diverge from the nodes that
                        // applied the entry: stop here instead.
                        error!(
                            index = e.index,
                            term = e.term,
                            error = %err,
                            "cannot decode committed entry {}; this node stops applying and \
                             serving until it runs a version that reads it",
                            e.index
                        );
                        self.halted = Some((e.index, err.to_string()));
                        self.while_halted();
                        if let Some(id) = own {
                            resolved.push((id, Err(ProposeError::Invalid(err.to_string()))));
                        }
                    }
                },
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                    let res = self.apply_conf_change(&e);
                    *membership_changed = true;
                    *checkpoint = true;
                    match res {
                        Ok(evs) => {
                            events.extend(evs.into_iter().map(|ev| (e.index, ev)));
                            if let Some(id) = own {
                                resolved.push((id, Ok(Outcome::default())));
                            }
                        }
                        Err(msg) => {
                            warn!(index = e.index, error = %msg, "conf change refused");
                            self.state.skip(e.index);
                            if let Some(id) = own {
                                resolved.push((id, Err(ProposeError::Invalid(msg))));
                            }
                        }
                    }
                }
            }
        }
        batch.changed = self.state.applied_index != start;
        batch
    }

    /// The applied state to save with a Ready, if the batch changed it.
    fn applied_state(&self, batch: &ApplyBatch) -> Option<AppliedState<'_>> {
        batch.changed.then(|| AppliedState {
            index: self.state.applied_index,
            commit: self.raw.raft.raft_log.committed,
            cs: &self.cs,
            state: &self.state,
        })
    }

    fn save_guard(&mut self) -> Result<(), StoreError> {
        if self.guard_dirty {
            self.store.save_vote_guard(self.guard)?;
            self.guard_dirty = false;
        }
        Ok(())
    }

    /// After the batch is durable: publish events and state, answer proposers, release reads.
    fn finish(&mut self, batch: ApplyBatch) -> Result<(), StoreError> {
        self.save_guard()?;
        if !batch.changed {
            return Ok(());
        }
        // Events before state: whoever sees the state at index X was sent every event up to X.
        for (index, ev) in batch.events {
            if index <= self.replay_upto {
                debug!(index, event = %ev.kind, "event of an entry applied again after a restart; published before");
                continue;
            }
            info!(index, event = %ev.kind, master = ev.master.as_deref().unwrap_or(""), node = ?ev.node, "{} {}", ev.kind, ev.payload);
            let _ = self.events_tx.send(AppliedEvent { index, event: ev });
        }
        self.state_tx.send_replace(Arc::new(self.state.clone()));
        for (id, res) in batch.resolved {
            match self.waiters.remove(&id) {
                Some((_, Waiter::Propose(tx))) => {
                    let _ = tx.send(res);
                }
                Some((_, Waiter::Conf(tx))) => {
                    let _ = tx.send(res.map(|_| ()));
                }
                None => {}
            }
        }
        if batch.membership_changed {
            self.update_peers();
        }
        if batch.checkpoint && self.halted.is_none() {
            self.checkpoint(None)?;
        }
        self.release_reads();
        self.maybe_compact()?;
        Ok(())
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<Vec<crate::fsm::Event>, String> {
        let cc: ConfChangeV2 = if e.get_entry_type() == EntryType::EntryConfChange {
            let v1: raft::eraftpb::ConfChange =
                protobuf::Message::parse_from_bytes(&e.data).map_err(|e| e.to_string())?;
            // Never proposed by this project, but a valid entry type: convert by hand.
            let mut single = raft::eraftpb::ConfChangeSingle::default();
            single.set_change_type(v1.get_change_type());
            single.node_id = v1.node_id;
            let mut v2 = ConfChangeV2::default();
            v2.mut_changes().push(single);
            v2.context = v1.context;
            v2
        } else if e.data.is_empty() {
            // The auto-leave entry of a joint change has empty data: it must still be applied.
            ConfChangeV2::default()
        } else {
            codec::decode_conf_change_v2(&e.data).map_err(|e| e.to_string())?
        };
        let cs = self.raw.apply_conf_change(&cc).map_err(|e| e.to_string())?;
        let added = std::str::from_utf8(&cc.context)
            .ok()
            .filter(|s| !s.is_empty())
            .and_then(|addr| {
                cc.changes
                    .iter()
                    .find(|c| c.get_change_type() != raft::eraftpb::ConfChangeType::RemoveNode)
                    .map(|c| (c.node_id, addr.to_string()))
            });
        info!(index = e.index, voters = ?cs.voters, learners = ?cs.learners, outgoing = ?cs.voters_outgoing, "membership changed");
        self.cs = cs;
        self.observe_membership();
        let voters: BTreeSet<NodeId> = self
            .cs
            .voters
            .iter()
            .chain(self.cs.voters_outgoing.iter())
            .copied()
            .collect();
        let learners: BTreeSet<NodeId> = self
            .cs
            .learners
            .iter()
            .chain(self.cs.learners_next.iter())
            .copied()
            .filter(|id| !voters.contains(id))
            .collect();
        Ok(self
            .state
            .set_membership(e.index, &voters, &learners, added))
    }

    fn maybe_compact(&mut self) -> Result<(), StoreError> {
        let threshold = self.cfg.compact_threshold.max(2);
        if self.store.log_len() <= threshold {
            return Ok(());
        }
        // Keep a tail so briefly lagging followers catch up from the log, not a snapshot.
        let upto = self.state.applied_index.saturating_sub(threshold / 2);
        if upto > self.store.trunc_index() {
            debug!(
                index = upto,
                "saving the state machine and compacting the raft log"
            );
            self.checkpoint(Some(upto))?;
        }
        Ok(())
    }

    /// Saves the state machine as applied (and compacts the log up to `compact_upto`).
    fn checkpoint(&mut self, compact_upto: Option<u64>) -> Result<(), StoreError> {
        self.store.checkpoint(
            AppliedState {
                index: self.state.applied_index,
                commit: self.raw.raft.raft_log.committed,
                cs: &self.cs,
                state: &self.state,
            },
            compact_upto,
        )
    }

    fn on_read_states(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Some(id) = self.own_id(&rs.request_ctx) else {
                continue;
            };
            if self.contact.confirmed(id, rs.index) {
                continue;
            }
            if let Some(reply) = self.reads.remove(&id) {
                self.parked_reads.push((rs.index, reply));
            }
        }
        self.release_reads();
    }

    fn release_reads(&mut self) {
        let applied = self.state.applied_index;
        // Rounds whose index is applied hold: everything committed when a quorum confirmed
        // the leader is applied here. A halted node vouches for nothing.
        if self.halted.is_some() {
            self.contact.reset();
        } else {
            self.contact.applied(applied);
        }
        let mut i = 0;
        while i < self.parked_reads.len() {
            if self.parked_reads[i].0 <= applied {
                let (idx, reply) = self.parked_reads.swap_remove(i);
                let _ = reply.send(Ok(idx.max(applied)));
            } else {
                i += 1;
            }
        }
    }

    fn after_ready(&mut self) {
        let role = self.raw.raft.state;
        let leader = self.raw.raft.leader_id;
        let term = self.raw.raft.term;
        if term != self.last_term {
            // Confirmations of an earlier term say nothing about this one.
            self.last_term = term;
            self.contact.reset();
        }
        if role != self.last_role || leader != self.last_leader {
            info!(term = self.raw.raft.term, leader_id = leader, role = ?role, "raft role changed");
            if role == StateRole::Leader {
                // Do self duties (bootstrap, announce) right away in a new term.
                self.last_self_tasks = None;
            }
            if leader != self.last_leader {
                // A new leader may hold entries this node has not applied: resync first.
                self.contact.reset();
                // Proposals made under the old leader may be lost with it: answer them now
                // (outcome unknown) rather than after a timeout.
                let stale: Vec<u64> = self
                    .waiters
                    .iter()
                    .filter(|(_, (l, _))| *l != leader)
                    .map(|(id, _)| *id)
                    .collect();
                for id in stale {
                    if let Some((_, w)) = self.waiters.remove(&id) {
                        w.fail(ProposeError::LeaderChanged);
                    }
                }
                // Pending reads were addressed to the old leader and will never be answered.
                for (_, r) in self.reads.drain() {
                    let _ = r.send(Err(ProposeError::NotLeader {
                        leader: (leader != 0).then_some(leader),
                    }));
                }
            }
            self.last_role = role;
            self.last_leader = leader;
        }
    }

    fn update_peers(&self) {
        let mut peers = self.cfg.configured_peers.clone();
        for (id, m) in &self.state.members {
            if let Some(addr) = &m.info.peer_addr {
                peers.insert(*id, addr.clone());
            }
        }
        peers.remove(&self.cfg.id);
        self.transport.set_peers(peers);
    }

    fn publish_status(&self) {
        let r = &self.raw.raft;
        let progress = if r.state == StateRole::Leader {
            r.prs()
                .iter()
                .map(|(id, p)| PeerProgress {
                    id: *id,
                    matched: p.matched,
                    next_idx: p.next_idx,
                    state: format!("{:?}", p.state),
                    recent_active: *id == self.cfg.id
                        || self
                            .last_heard
                            .get(id)
                            .is_some_and(|t| t.elapsed() < self.cfg.election_timeout()),
                })
                .collect()
        } else {
            Vec::new()
        };
        let status = RaftStatus {
            id: self.cfg.id,
            role: match r.state {
                StateRole::Leader => Role::Leader,
                StateRole::Candidate => Role::Candidate,
                StateRole::PreCandidate => Role::PreCandidate,
                StateRole::Follower => Role::Follower,
            },
            leader_id: r.leader_id,
            term: r.term,
            commit: r.raft_log.committed,
            applied: self.state.applied_index,
            first_index: self.store.trunc_index() + 1,
            last_index: r.raft_log.last_index(),
            voters: sorted(&self.cs.voters),
            learners: sorted(&self.cs.learners),
            voters_outgoing: sorted(&self.cs.voters_outgoing),
            learners_next: sorted(&self.cs.learners_next),
            pending_conf_index: r.pending_conf_index,
            progress,
            awaiting_replacement: self.guard.awaiting,
            boot_pending: self.boot_pending,
            halted: self.halted.clone(),
        };
        self.status_tx.send_if_modified(|cur| {
            if **cur == status {
                false
            } else {
                *cur = Arc::new(status);
                true
            }
        });
    }
}

/// What applying a list of committed entries produced, held until it is durable.
#[derive(Default)]
struct ApplyBatch {
    /// Proposal ids of this node and their outcomes.
    resolved: Vec<(u64, Result<Outcome, ProposeError>)>,
    /// Events with the index of the entry that caused them.
    events: Vec<(u64, crate::fsm::Event)>,
    /// A conf change was applied (peers may have changed).
    membership_changed: bool,
    /// The applied index moved.
    changed: bool,
    /// An entry about the cluster's make-up was applied (membership, announcements, the
    /// cluster version): saved at once rather than at the next compaction. They are rare, and
    /// what a restarted node tells others (who has run in this cluster, see `net::boot`) must
    /// not depend on a leader being there to commit its log again.
    checkpoint: bool,
}

fn raft_config(cfg: &NodeConfig, applied: u64) -> raft::Config {
    raft::Config {
        id: cfg.id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        applied,
        check_quorum: true,
        pre_vote: true,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 256,
        ..raft::Config::default()
    }
}

/// Writes the initial configuration every initial voter shares; returns its state.
fn bootstrap_store(
    cfg: &NodeConfig,
    store: &DiskStore,
    voters: &[NodeId],
) -> Result<ClusterState, StoreError> {
    let initial = ClusterState::with_voters(
        voters
            .iter()
            .map(|id| (*id, cfg.configured_peers.get(id).cloned())),
    );
    store.bootstrap(voters, &initial)?;
    let mut state = initial;
    state.applied_index = store.applied();
    info!(node_id = cfg.id, voters = ?voters, "bootstrapped a new cluster");
    Ok(state)
}

fn sorted(v: &[u64]) -> Vec<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}
