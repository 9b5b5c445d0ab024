//! `RaftHandle`: the cloneable way every other task talks to the node task.
//!
//! `propose` resolves only when the entry is applied (never earlier); `read_index` resolves
//! when a linearizable read is safe; state, status and events are watched, never locked.

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Message,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::contact::ContactReader;
use super::mailbox::{BootDecision, NodeMsg, ProposeError};
use super::stats::ProposalStats;
use super::status::{AppliedEvent, RaftStatus, Role};
use crate::fsm::{ClusterState, Command, Outcome, RejectKind};
use crate::model::NodeId;

/// Default time a proposal may take before the caller gets `Timeout`.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a learner may take to catch up before promotion is given up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(30);

/// Commands queued with [`RaftHandle::submit_all`], not yet known to be applied.
pub struct Submitted {
    rxs: Vec<oneshot::Receiver<Result<Outcome, ProposeError>>>,
    started: Instant,
    timeout: Duration,
    stats: Arc<ProposalStats>,
}

impl Submitted {
    /// Waits for each command's outcome (applied on this node, refused, or failed), at most
    /// until the timeout given when they were queued. In the order they were given.
    pub async fn outcomes(self) -> Vec<Result<Outcome, ProposeError>> {
        let deadline = self.started + self.timeout;
        let mut out = Vec::with_capacity(self.rxs.len());
        for rx in self.rxs {
            let res = match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => Err(ProposeError::Timeout(self.timeout)),
                Ok(Err(_)) => Err(ProposeError::Shutdown),
                Ok(Ok(r)) => r,
            };
            self.stats.record_outcome(&res, self.started.elapsed());
            out.push(res);
        }
        out
    }
}

/// Cloneable handle to the node task. Built by the node task itself (see `RaftNode::start`).
#[derive(Clone)]
pub struct RaftHandle {
    pub(super) id: NodeId,
    pub(super) tx: mpsc::Sender<NodeMsg>,
    pub(super) state: watch::Receiver<Arc<ClusterState>>,
    pub(super) status: watch::Receiver<Arc<RaftStatus>>,
    pub(super) events: broadcast::Sender<AppliedEvent>,
    /// The lease this node's task keeps (see [`LeaderContact`](super::contact::LeaderContact)).
    pub(super) contact: ContactReader,
    /// Sentinel address announced instead of the configured one (see
    /// [`RaftHandle::announce_sentinel_addr`]).
    pub(super) sentinel_addr: Arc<parking_lot::Mutex<Option<String>>>,
    pub(super) epoch_start: Instant,
    pub(super) election_timeout: Duration,
    pub(super) stats: Arc<ProposalStats>,
}

impl RaftHandle {
    /// Proposal counters and latency, for metrics.
    pub fn proposal_stats(&self) -> &ProposalStats {
        &self.stats
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Announces `addr` (`host:port`) as this node's Sentinel address from now on, or the
    /// configured one again with `None`. The node commits the change through the log within
    /// an election timeout, while it has a leader; other nodes then list the new address in
    /// `SENTINEL SENTINELS`, and leader placement uses its host.
    pub fn announce_sentinel_addr(&self, addr: Option<String>) {
        *self.sentinel_addr.lock() = addr;
    }

    /// The election timeout (tick × election ticks).
    pub fn election_timeout(&self) -> Duration {
        self.election_timeout
    }

    /// Proposes a command and waits until it is applied, with the default timeout.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ProposeError> {
        self.propose_with_timeout(cmd, PROPOSE_TIMEOUT).await
    }

    /// Proposes a command and waits until it is applied on this node.
    pub async fn propose_with_timeout(
        &self,
        cmd: Command,
        timeout: Duration,
    ) -> Result<Outcome, ProposeError> {
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        let res = self
            .call(NodeMsg::Propose { cmd, reply }, rx, timeout)
            .await;
        self.stats.record_outcome(&res, started.elapsed());
        res
    }

    /// Proposes several commands at once, appended in this order (one entry where the
    /// cluster's format allows, see [`Command::batchable`]), and waits until each is applied
    /// on this node or `timeout` passes. One outcome per command, in order.
    pub async fn propose_all(
        &self,
        cmds: Vec<Command>,
        timeout: Duration,
    ) -> Vec<Result<Outcome, ProposeError>> {
        let n = cmds.len();
        match self.submit_all(cmds, timeout).await {
            Ok(s) => s.outcomes().await,
            Err(e) => vec![Err(e); n],
        }
    }

    /// The first half of [`RaftHandle::propose_all`]: returns once the commands are queued
    /// to the node, in order, before anything queued later. A leader that numbers epochs
    /// itself queues each round of decisions this way (in the order it numbered them) and
    /// waits for the outcomes without holding up the next round.
    pub async fn submit_all(
        &self,
        cmds: Vec<Command>,
        timeout: Duration,
    ) -> Result<Submitted, ProposeError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut rxs = Vec::with_capacity(cmds.len());
        let mut msg = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            let (reply, rx) = oneshot::channel();
            msg.push((cmd, reply));
            rxs.push(rx);
        }
        tokio::time::timeout_at(deadline, self.tx.send(NodeMsg::ProposeAll { cmds: msg }))
            .await
            .map_err(|_| ProposeError::Timeout(timeout))?
            .map_err(|_| ProposeError::Shutdown)?;
        Ok(Submitted {
            rxs,
            started,
            timeout,
            stats: self.stats.clone(),
        })
    }

    /// Proposes an operator's command (MONITOR, SET, REMOVE, RESET) the way setup scripts
    /// need it: with no leader known, or while leadership moves, it waits up to
    /// [`RaftHandle::leader_wait`] for a leader and retries inside the node. These commands
    /// are idempotent in the state machine (an identical MONITOR, a SET of the same values and
    /// a RESET are no-ops the second time), so an attempt whose outcome is unknown is simply
    /// proposed again, and the caller learns what actually happened rather than "unknown".
    /// A REMOVE retried after an unknown outcome that finds the master gone answers success:
    /// the first attempt removed it.
    pub async fn propose_retrying(&self, cmd: Command) -> Result<Outcome, ProposeError> {
        let leader_wait = self.leader_wait();
        let deadline = Instant::now() + leader_wait + PROPOSE_TIMEOUT;
        let mut unknown = false;
        loop {
            self.wait_for_leader(
                leader_wait.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await?;
            // An attempt that outlives a leader's term is usually a proposal dropped by a
            // leader in transfer: give up on it after an election and try again.
            let attempt = (self.election_timeout * 2)
                .max(Duration::from_millis(500))
                .min(deadline.saturating_duration_since(Instant::now()));
            let err = match self.propose_with_timeout(cmd.clone(), attempt).await {
                Ok(o) => return Ok(o),
                Err(e) => e,
            };
            match err {
                ProposeError::Rejected(r)
                    if unknown
                        && r.kind == RejectKind::NotFound
                        && matches!(cmd, Command::Remove { .. }) =>
                {
                    return Ok(Outcome::default())
                }
                ProposeError::LeaderChanged | ProposeError::Timeout(_) => unknown = true,
                ProposeError::NotLeader { .. } => {}
                e => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(if unknown {
                    ProposeError::Timeout(leader_wait + PROPOSE_TIMEOUT)
                } else {
                    self.not_leader_now()
                });
            }
            // Let the election or transfer make progress before the next attempt.
            tokio::time::sleep((self.election_timeout / 20).max(Duration::from_millis(5))).await;
        }
    }

    /// How long an operator's command waits for a leader: 2 × the election timeout, counted
    /// from when this node's first election could end when it has only just started (a fresh
    /// node waits a randomized election timeout before it campaigns).
    pub fn leader_wait(&self) -> Duration {
        let wait = self.election_timeout * 2;
        wait + wait.saturating_sub(self.epoch_start.elapsed())
    }

    /// Waits until this node knows a leader that is not handing leadership away; fails with
    /// `NotLeader` after `limit`.
    pub async fn wait_for_leader(&self, limit: Duration) -> Result<(), ProposeError> {
        match self.wait_status(limit, |s| s.leader_id != 0).await {
            Err(ProposeError::Timeout(_)) => Err(self.not_leader_now()),
            r => r,
        }
    }

    fn not_leader_now(&self) -> ProposeError {
        ProposeError::NotLeader {
            leader: self.status().leader(),
        }
    }

    /// Waits until a linearizable read is safe on this node; returns the read index.
    /// Fails with `NotLeader` when no leader is reachable (a minority partition).
    pub async fn read_index(&self, timeout: Duration) -> Result<u64, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.call(NodeMsg::ReadIndex { reply }, rx, timeout).await
    }

    async fn call<T>(
        &self,
        msg: NodeMsg,
        rx: oneshot::Receiver<Result<T, ProposeError>>,
        timeout: Duration,
    ) -> Result<T, ProposeError> {
        let deadline = Instant::now() + timeout;
        tokio::time::timeout_at(deadline, self.tx.send(msg))
            .await
            .map_err(|_| ProposeError::Timeout(timeout))?
            .map_err(|_| ProposeError::Shutdown)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(ProposeError::Timeout(timeout)),
            Ok(Err(_)) => Err(ProposeError::Shutdown),
            Ok(Ok(r)) => r,
        }
    }

    /// Hands a message from a peer to the node; drops it when the mailbox is full.
    pub fn step(&self, msg: Message) -> bool {
        self.tx.try_send(NodeMsg::Step(msg)).is_ok()
    }

    /// The applied state machine, as of now.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// A receiver that sees every new applied state.
    pub fn watch_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// Current Raft status.
    pub fn status(&self) -> Arc<RaftStatus> {
        self.status.borrow().clone()
    }

    /// A receiver that sees status changes.
    pub fn watch_status(&self) -> watch::Receiver<Arc<RaftStatus>> {
        self.status.clone()
    }

    /// Events of entries applied from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<AppliedEvent> {
        self.events.subscribe()
    }

    /// Time since the last quorum confirmation of this node's leader started.
    /// `None` if it never has.
    pub fn since_leader_contact(&self) -> Option<Duration> {
        self.contact.since()
    }

    /// True while a quorum confirmed this node's leader (and this node applied what was
    /// committed then) less than a lease ago: it may vouch for its applied state, and a
    /// leader may act on Redis. The lease is shorter than the time the voters of that quorum
    /// refuse to elect anyone else, so no other leader can exist meanwhile. False on a node
    /// cut off in a minority, deposed leaders included.
    pub fn has_leader_contact(&self) -> bool {
        self.contact.holds()
    }

    /// See [`RaftHandle::has_leader_contact`].
    pub fn lease(&self) -> Duration {
        self.contact.lease()
    }

    /// Asks the node to hand leadership to `to`, and waits until `to` leads (or times out).
    pub async fn transfer_leader(&self, to: NodeId, timeout: Duration) -> Result<(), ProposeError> {
        let st = self.status();
        if !st.voters.contains(&to) {
            return Err(ProposeError::Invalid(format!("node {to} is not a voter")));
        }
        if st.leader_id == to {
            return Ok(());
        }
        self.tx
            .send(NodeMsg::TransferLeader(to))
            .await
            .map_err(|_| ProposeError::Shutdown)?;
        self.wait_status(timeout, |s| s.leader_id == to).await
    }

    /// Hands the boot decision to a node started with [`super::Boot::Decide`].
    pub async fn decide_boot(&self, d: BootDecision) -> Result<(), ProposeError> {
        self.tx
            .send(NodeMsg::Boot(d))
            .await
            .map_err(|_| ProposeError::Shutdown)
    }

    async fn wait_status(
        &self,
        timeout: Duration,
        mut f: impl FnMut(&RaftStatus) -> bool,
    ) -> Result<(), ProposeError> {
        let mut rx = self.status.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|s| f(s))).await;
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ProposeError::Shutdown),
            Err(_) => Err(ProposeError::Timeout(timeout)),
        }
    }

    /// Proposes a membership change once the previous one is applied: raft-rs turns a
    /// conf change proposed while another is unapplied (or while a joint configuration is
    /// not left yet) into an empty entry, and its proposer would never be answered.
    async fn conf_change(&self, cc: ConfChangeV2) -> Result<(), ProposeError> {
        let deadline = tokio::time::Instant::now() + PROPOSE_TIMEOUT;
        let leaving = cc.changes.is_empty();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.wait_status(left, |s| {
                s.role != Role::Leader
                    || (s.pending_conf_index <= s.applied
                        && (leaving || s.voters_outgoing.is_empty()))
            })
            .await?;
            let (reply, rx) = oneshot::channel();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .call(
                    NodeMsg::ConfChange {
                        cc: cc.clone(),
                        reply,
                    },
                    rx,
                    left,
                )
                .await
            {
                // The status lagged the node: wait for the next one.
                Err(ProposeError::MembershipBusy) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                r => return r,
            }
        }
    }

    fn leader_only(&self) -> Result<Arc<RaftStatus>, ProposeError> {
        let st = self.status();
        if st.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: st.leader(),
            });
        }
        Ok(st)
    }

    /// Adds a node: first as a learner, waits for it to catch up, then promotes it to voter
    /// through a joint configuration. Must run on the leader.
    pub async fn add_node(&self, id: NodeId, peer_addr: &str) -> Result<(), ProposeError> {
        let st = self.leader_only()?;
        if id == 0 {
            return Err(ProposeError::Invalid(
                "node id must be greater than 0".into(),
            ));
        }
        if peer_addr.parse::<crate::model::Addr>().is_err() {
            return Err(ProposeError::Invalid(format!(
                "peer address '{peer_addr}' is not host:port"
            )));
        }
        if st.voters.contains(&id) {
            return Err(ProposeError::Precondition(format!(
                "node {id} is already a voter"
            )));
        }
        if !st.learners.contains(&id) {
            let mut cc = single(ConfChangeType::AddLearnerNode, id);
            cc.context = peer_addr.as_bytes().to_vec().into();
            self.conf_change(cc).await?;
        }
        // Promote only once the learner holds nearly everything, so the new majority can
        // commit right away.
        let target = self.status().commit;
        self.wait_status(CATCH_UP_TIMEOUT, |s| {
            s.role != Role::Leader || s.progress.iter().any(|p| p.id == id && p.matched >= target)
        })
        .await
        .map_err(|e| match e {
            ProposeError::Timeout(_) => ProposeError::Precondition(format!(
                "node {id} did not catch up within {CATCH_UP_TIMEOUT:?}; it stays a learner"
            )),
            e => e,
        })?;
        self.leader_only()?;
        let mut cc = single(ConfChangeType::AddNode, id);
        cc.transition = ConfChangeTransition::Implicit;
        self.conf_change(cc).await?;
        // Done only once the joint configuration is left: a voter lost while the cluster is
        // still joint can stall it for good. The status may lag the applied entry, so the
        // new voter must be in it too.
        self.wait_status(PROPOSE_TIMEOUT, |s| {
            s.voters.contains(&id) && s.voters_outgoing.is_empty()
        })
        .await
    }

    /// Removes a node through a joint configuration. Refused when the remaining voters that
    /// are reachable would not form a majority. When the node to remove is this leader,
    /// leadership is transferred first and the caller gets `NotLeader` naming the new leader.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), ProposeError> {
        let st = self.leader_only()?;
        let is_voter = st.voters.contains(&id);
        if !is_voter && !st.learners.contains(&id) {
            return Err(ProposeError::Precondition(format!(
                "node {id} is not a member"
            )));
        }
        if is_voter {
            self.check_voter_can_go(&st, id, "remove").await?;
        }
        let mut cc = single(ConfChangeType::RemoveNode, id);
        cc.transition = ConfChangeTransition::Implicit;
        self.conf_change(cc).await?;
        self.wait_status(PROPOSE_TIMEOUT, |s| {
            s.voters_outgoing.is_empty() && !s.voters.contains(&id) && !s.learners.contains(&id)
        })
        .await
    }

    /// Re-admits a node that lost its data dir (it waits, not voting, see
    /// [`super::VoteGuard`]): a voter is first demoted to learner through a joint
    /// configuration, then promoted like [`Self::add_node`] once it has caught up.
    /// `peer_addr` is needed only when the node is no longer a member.
    pub async fn replace_node(
        &self,
        id: NodeId,
        peer_addr: Option<&str>,
    ) -> Result<(), ProposeError> {
        let st = self.leader_only()?;
        if id == self.id {
            return Err(ProposeError::Precondition(format!(
                "node {id} is the leader: it has its data; nothing to replace"
            )));
        }
        let known = self
            .state()
            .members
            .get(&id)
            .and_then(|m| m.info.peer_addr.clone());
        let addr = match (peer_addr.filter(|a| !a.is_empty()), known) {
            (Some(a), _) => a.to_string(),
            (None, Some(a)) => a,
            (None, None) => {
                return Err(ProposeError::Invalid(format!(
                    "node {id} is not a member: give its peer address"
                )))
            }
        };
        if st.voters.contains(&id) {
            self.check_voter_can_go(&st, id, "demote").await?;
            let mut cc = single(ConfChangeType::AddLearnerNode, id);
            cc.transition = ConfChangeTransition::Implicit;
            self.conf_change(cc).await?;
            self.wait_status(PROPOSE_TIMEOUT, |s| {
                s.voters_outgoing.is_empty() && s.learners.contains(&id)
            })
            .await?;
        }
        self.add_node(id, &addr).await
    }

    /// Refuses to take voter `id` out of the voting set when the remaining reachable voters
    /// would not form a majority; when `id` is this leader, hands leadership away first and
    /// returns `NotLeader` naming the new leader.
    async fn check_voter_can_go(
        &self,
        st: &RaftStatus,
        id: NodeId,
        what: &str,
    ) -> Result<(), ProposeError> {
        {
            let remaining: Vec<NodeId> = st.voters.iter().copied().filter(|&v| v != id).collect();
            if remaining.is_empty() {
                return Err(ProposeError::Precondition(format!(
                    "cannot {what} the last voter"
                )));
            }
            // A leader that just took over has not heard from every follower yet: give its
            // view of who is reachable up to an election timeout before refusing.
            let reachable = |st: &RaftStatus| {
                remaining
                    .iter()
                    .filter(|v| st.progress.iter().any(|p| p.id == **v && p.recent_active))
                    .count()
            };
            let mut active = reachable(st);
            let deadline = Instant::now() + self.election_timeout;
            while active <= remaining.len() / 2 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                active = reachable(&*self.leader_only()?);
            }
            if active <= remaining.len() / 2 {
                return Err(ProposeError::Precondition(format!(
                    "to {what} node {id} would leave {active} reachable of {} voters: no majority",
                    remaining.len()
                )));
            }
            if id == self.id {
                // A removed leader keeps leading in raft-rs 0.7: hand leadership away first.
                let to = st
                    .progress
                    .iter()
                    .filter(|p| p.id != id && p.recent_active && remaining.contains(&p.id))
                    .max_by_key(|p| p.matched)
                    .map(|p| p.id)
                    .ok_or_else(|| {
                        ProposeError::Precondition("no voter to transfer leadership to".into())
                    })?;
                self.transfer_leader(to, self.election_timeout * 2).await?;
                return Err(ProposeError::NotLeader { leader: Some(to) });
            }
        }
        Ok(())
    }
}

fn single(t: ConfChangeType, id: NodeId) -> ConfChangeV2 {
    let mut c = ConfChangeSingle::default();
    c.set_change_type(t);
    c.node_id = id;
    let mut cc = ConfChangeV2::default();
    cc.mut_changes().push(c);
    cc
}
