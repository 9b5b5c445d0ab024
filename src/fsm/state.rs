//! `ClusterState` and its deterministic `apply`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::command::{
    Command, FailoverReason, FenceKind, MasterSpec, MemberInfo, ObserveReason, ReconfStage,
};
use super::event::{master_details, replica_details, Event};
use super::limits::{
    check_addr, check_len, Limits, LEGACY_HISTORY_LIMIT, MAX_NAME_LEN, MAX_RUN_ID_LEN,
    MAX_SECRET_LEN,
};
use super::spec::{check_spec, script_ok, SpecField, SpecProblem};
use crate::model::{glob_match, Addr, Epoch, NodeId};

/// Failover history entries kept per master (that master's oldest dropped first). Sized with
/// the other limits so the state fits one snapshot message (see `fsm::limits`).
pub const HISTORY_LIMIT: usize = 20;

/// Shortest time a down vote stays valid without being re-affirmed (Sentinel ignores peer
/// replies older than about this).
pub const VOTE_TTL_FLOOR_MS: u64 = 5_000;

/// Default time after which an unreachable replica that its master no longer lists is
/// forgotten: one hour.
pub const DEFAULT_REPLICA_FORGET_AFTER_MS: u64 = 3_600_000;

fn default_forget_after() -> u64 {
    DEFAULT_REPLICA_FORGET_AFTER_MS
}

/// Default automatic failovers allowed per window (anti-flapping budget).
const DEFAULT_BUDGET: u32 = 3;
/// Default budget window: ten minutes.
const DEFAULT_BUDGET_WINDOW_MS: u64 = 600_000;

/// One node's latest view of a master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Subjectively down.
    pub down: bool,
    /// Why.
    pub reason: ObserveReason,
    /// When the node proposed it (its wall clock, ms). A down vote is re-affirmed while the
    /// node still sees the master down, which moves this forward.
    pub at_ms: u64,
    /// A `+vote-ignored` event was emitted for this vote (once per vote, not per evaluation).
    #[serde(default)]
    pub ignored: bool,
}

/// Why a down vote did not count toward ODOWN at some time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleVote {
    /// Not re-affirmed within the vote lifetime: `age_ms` old.
    Expired {
        /// Age of the vote at the evaluation time.
        age_ms: u64,
    },
    /// Stamped later than the evaluation time by more than the lifetime: the voter's clock is
    /// ahead (or the evaluating proposer's is behind).
    Future {
        /// How far ahead.
        ahead_ms: u64,
    },
}

/// A failover between `FailoverStart` and `FailoverDone`/`FailoverAbort`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverState {
    /// Epoch taken by this failover.
    pub epoch: Epoch,
    /// Replica being promoted.
    pub candidate: Addr,
    /// Why it started.
    pub reason: FailoverReason,
    /// Node that runs it.
    pub leader: NodeId,
    /// When it started (leader's clock).
    pub started_at_ms: u64,
}

/// An operator's failover request waiting for the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequestState {
    /// `Forced` or `Switchover`.
    pub reason: FailoverReason,
    /// Replica to promote, if the operator chose one.
    pub target: Option<Addr>,
    /// When it was requested.
    pub at_ms: u64,
    /// Index of the entry that made the request (identifies it).
    pub index: u64,
}

/// Replicas being pointed at a newly promoted master, after `FailoverDone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconfState {
    /// Epoch of the failover.
    pub epoch: Epoch,
    /// When the failover started (for `failover_timeout`).
    pub started_at_ms: u64,
    /// The master that was replaced.
    pub old_addr: Addr,
    /// Stage of each replica that has been touched.
    pub replicas: BTreeMap<Addr, ReconfStage>,
}

/// State of one monitored master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterState {
    /// Sentinel master name.
    pub name: String,
    /// Current master address: changes only at `FailoverDone`.
    pub addr: Addr,
    /// Address given when monitoring started (a repeated identical MONITOR is accepted).
    pub monitored_addr: Addr,
    /// Epoch of the last promotion of this master (0 if never failed over).
    pub config_epoch: Epoch,
    /// Observations needed for ODOWN.
    pub quorum: u32,
    /// SDOWN threshold.
    pub down_after_ms: u64,
    /// Upper bound for one failover.
    pub failover_timeout_ms: u64,
    /// Replicas resyncing at once after a promotion.
    pub parallel_syncs: u32,
    /// ACL user for Redis.
    pub auth_user: Option<String>,
    /// Password for Redis.
    pub auth_pass: Option<String>,
    /// TLS to Redis.
    pub tls: bool,
    /// Sentinel's `master-reboot-down-after-period` (0 = off).
    pub reboot_down_after_ms: u64,
    /// Automatic failovers allowed per window (0 = unlimited).
    pub failover_budget: u32,
    /// Length of the budget window.
    pub failover_budget_window_ms: u64,
    /// Replicas known (discovered or former masters); forgotten only by `Reset`.
    pub replicas: BTreeSet<Addr>,
    /// Latest observation per node.
    pub observations: BTreeMap<NodeId, Observation>,
    /// Since when the master is objectively down (the observation that completed the quorum).
    pub odown_since_ms: Option<u64>,
    /// Operator request waiting for the leader.
    pub failover_request: Option<FailoverRequestState>,
    /// Failover in its promotion phase.
    pub failover: Option<FailoverState>,
    /// Reconfiguration of replicas after the last promotion.
    pub reconf: Option<ReconfState>,
    /// Automatic failover disabled for maintenance.
    pub paused: bool,
    /// Start times of recent automatic failovers, for the budget.
    pub recent_failovers_ms: Vec<u64>,
    /// A replica unreachable and absent from the master's INFO for this long is forgotten
    /// (`SENTINEL SET <name> replica-forget-after <ms>`; 0 = never).
    #[serde(default = "default_forget_after")]
    pub replica_forget_after_ms: u64,
    /// Highest epoch among this master's failover records dropped from the bounded history
    /// (0: none dropped). A watch resuming from an older epoch cannot be served exactly.
    #[serde(default)]
    pub history_dropped_epoch: Epoch,
    /// Sentinel's `notification-script` (path run on every node; None: none).
    #[serde(default)]
    pub notification_script: Option<String>,
    /// Sentinel's `client-reconfig-script`.
    #[serde(default)]
    pub client_reconfig_script: Option<String>,
}

impl MasterState {
    pub(crate) fn from_spec(spec: &MasterSpec) -> MasterState {
        MasterState {
            name: spec.name.clone(),
            addr: spec.addr.clone(),
            monitored_addr: spec.addr.clone(),
            config_epoch: 0,
            quorum: spec.quorum,
            down_after_ms: spec.down_after_ms,
            failover_timeout_ms: spec.failover_timeout_ms,
            parallel_syncs: spec.parallel_syncs,
            auth_user: spec.auth_user.clone(),
            auth_pass: spec.auth_pass.clone(),
            tls: spec.tls,
            reboot_down_after_ms: 0,
            failover_budget: DEFAULT_BUDGET,
            failover_budget_window_ms: DEFAULT_BUDGET_WINDOW_MS,
            replicas: BTreeSet::new(),
            observations: BTreeMap::new(),
            odown_since_ms: None,
            failover_request: None,
            failover: None,
            reconf: None,
            paused: false,
            recent_failovers_ms: Vec::new(),
            history_dropped_epoch: 0,
            replica_forget_after_ms: DEFAULT_REPLICA_FORGET_AFTER_MS,
            notification_script: spec.notification_script.clone(),
            client_reconfig_script: spec.client_reconfig_script.clone(),
        }
    }

    /// How long a down vote counts without being re-affirmed: `max(2 × down_after, 5 s)`.
    pub fn vote_ttl_ms(&self) -> u64 {
        self.down_after_ms.saturating_mul(2).max(VOTE_TTL_FLOOR_MS)
    }

    /// Whether a down vote stamped `at_ms` is too old (or too far in the future) at `now_ms`.
    pub fn stale_vote(&self, at_ms: u64, now_ms: u64) -> Option<StaleVote> {
        let ttl = self.vote_ttl_ms();
        if now_ms.saturating_sub(at_ms) > ttl {
            Some(StaleVote::Expired {
                age_ms: now_ms - at_ms,
            })
        } else if at_ms.saturating_sub(now_ms) > ttl {
            Some(StaleVote::Future {
                ahead_ms: at_ms - now_ms,
            })
        } else {
            None
        }
    }

    /// Nodes whose latest observation says down and is still valid at `now_ms`.
    pub fn down_votes_at(&self, now_ms: u64) -> usize {
        self.observations
            .values()
            .filter(|o| o.down && self.stale_vote(o.at_ms, now_ms).is_none())
            .count()
    }

    /// Objectively down as of the last committed evaluation. Whoever acts on it uses
    /// [`MasterState::is_odown_at`], which also wants the votes to be fresh now.
    pub fn is_odown(&self) -> bool {
        self.odown_since_ms.is_some()
    }

    /// Objectively down, and at `now_ms` still `quorum` valid down votes.
    pub fn is_odown_at(&self, now_ms: u64) -> bool {
        self.is_odown() && self.down_votes_at(now_ms) >= self.quorum as usize
    }

    /// Automatic failovers started within the budget window ending at `now_ms`.
    pub fn failovers_in_window(&self, now_ms: u64) -> usize {
        self.recent_failovers_ms
            .iter()
            .filter(|&&t| now_ms.saturating_sub(t) < self.failover_budget_window_ms)
            .count()
    }

    /// Whether the anti-flapping budget allows another automatic failover at `now_ms`.
    pub fn budget_allows(&self, now_ms: u64) -> bool {
        self.failover_budget == 0
            || self.failovers_in_window(now_ms) < self.failover_budget as usize
    }

    fn details(&self) -> String {
        master_details(&self.name, &self.addr)
    }

    /// Re-evaluates ODOWN at `at_ms` (a time from the log, never a local clock), saying once
    /// per vote which down votes do not count and why. Without `expire` (a cluster below
    /// [`super::VOTE_EXPIRY_VERSION`]) every down vote counts, as format 1 builds counted them.
    fn recompute_odown(&mut self, at_ms: u64, expire: bool, events: &mut Vec<Event>) {
        if !expire {
            let votes = self.observations.values().filter(|o| o.down).count();
            self.set_odown(votes, at_ms, events);
            return;
        }
        let details = self.details();
        let ttl = self.vote_ttl_ms();
        let mut stale = Vec::new();
        for (node, o) in &self.observations {
            if !o.down || o.ignored {
                continue;
            }
            if let Some(why) = self.stale_vote(o.at_ms, at_ms) {
                stale.push(*node);
                let why = match why {
                    StaleVote::Expired { age_ms } => {
                        format!("expired: last affirmed {age_ms} ms before, limit {ttl} ms")
                    }
                    StaleVote::Future { ahead_ms } => {
                        format!("clock-skew: stamped {ahead_ms} ms ahead, limit {ttl} ms")
                    }
                };
                events.push(Event::new(
                    "+vote-ignored",
                    format!("{details} #node {node} {why}"),
                    Some(&self.name),
                ));
            }
        }
        for node in stale {
            if let Some(o) = self.observations.get_mut(&node) {
                o.ignored = true;
            }
        }
        let votes = self.down_votes_at(at_ms);
        self.set_odown(votes, at_ms, events);
    }

    /// ODOWN with `votes` counted, starting at `at_ms` if it was not already.
    fn set_odown(&mut self, votes: usize, at_ms: u64, events: &mut Vec<Event>) {
        let odown = votes >= self.quorum as usize;
        match (odown, self.odown_since_ms.is_some()) {
            (true, false) => {
                self.odown_since_ms = Some(at_ms);
                events.push(Event::new(
                    "+odown",
                    format!("{} #quorum {}/{}", self.details(), votes, self.quorum),
                    Some(&self.name),
                ));
            }
            (false, true) => {
                self.odown_since_ms = None;
                events.push(Event::new("-odown", self.details(), Some(&self.name)));
            }
            _ => {}
        }
    }
}

/// A coordinator node known to the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Voter (true) or learner.
    pub voter: bool,
    /// What the node announced about itself.
    pub info: MemberInfo,
}

/// One finished or running failover, for the API's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    /// Master name.
    pub master: String,
    /// Epoch taken.
    pub epoch: Epoch,
    /// Why it started.
    pub reason: FailoverReason,
    /// Master address before.
    pub from: Addr,
    /// Replica chosen.
    pub candidate: Option<Addr>,
    /// Node that ran it.
    pub leader: NodeId,
    /// Start (leader's clock).
    pub started_at_ms: u64,
    /// When the promotion was committed.
    pub promoted_at_ms: Option<u64>,
    /// Log index of the `FailoverDone` that switched the address (orders switches by commit,
    /// which epochs alone do not when failovers of different masters overlap).
    #[serde(default)]
    pub promoted_index: Option<u64>,
    /// When it ended (promotion plus reconfiguration, or abort).
    pub ended_at_ms: Option<u64>,
    /// `running`, `promoted`, `ended`, `timed_out` or `aborted: <why>`.
    pub outcome: String,
}

/// The whole replicated state. Serialized as the Raft snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Index of the last applied log entry.
    pub applied_index: u64,
    /// Highest epoch ever taken. Only increases.
    pub current_epoch: Epoch,
    /// The config's `[[masters]]` have been applied.
    pub bootstrapped: bool,
    /// Monitored masters by name.
    pub masters: BTreeMap<String, MasterState>,
    /// Coordinator nodes by id (from the Raft configuration).
    pub members: BTreeMap<NodeId, Member>,
    /// Recent failovers of every monitored master, oldest first; at most [`HISTORY_LIMIT`]
    /// per master.
    pub history: VecDeque<FailoverRecord>,
    /// Latest proposer time seen in an applied entry (ms). Evaluations triggered by entries
    /// without a time of their own (membership changes, `SENTINEL SET`) use it, so that
    /// every node computes the same result. Kept only while votes expire (0 below
    /// [`super::VOTE_EXPIRY_VERSION`]; see `apply_one`).
    #[serde(default)]
    pub clock_ms: u64,
    /// Committed command format version (0 reads as [`super::BASE_VERSION`]). Raised by
    /// `ClusterVersion` once every member announced that it reads it; never lowered.
    #[serde(default)]
    pub cluster_version: u32,
    /// Instances whose full syncs a node holds back, with the settings to restore when the
    /// hold ends (by any node: the one that set it may be gone).
    #[serde(default)]
    pub sync_holds: BTreeMap<Addr, SyncHoldRecord>,
}

/// Most sync holds recorded at once (one per instance that restarted empty).
pub const MAX_SYNC_HOLDS: usize = 16;
/// Longest `repl-diskless-sync*` value recorded.
const MAX_SYNC_VALUE_LEN: usize = 20;

/// The own sync settings of a held instance, and how to reach it even after its master is
/// removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncHoldRecord {
    /// Master name the hold was taken for.
    pub master: String,
    /// The node that set the hold (and releases it while it lives).
    pub owner: NodeId,
    /// `repl-diskless-sync` to restore.
    pub diskless_sync: String,
    /// `repl-diskless-sync-delay` to restore.
    pub diskless_sync_delay: String,
    /// Proposer's wall clock when the hold was recorded.
    pub since_ms: u64,
    /// The master's credentials when it was recorded.
    pub auth_user: Option<String>,
    /// The master's password when it was recorded.
    pub auth_pass: Option<String>,
    /// TLS to the instance.
    pub tls: bool,
}

/// What a successful command returns to its proposer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A count, where the command has one (`Reset`: masters reset).
    pub count: u64,
}

/// Category of a refused command, for mapping to RESP errors and gRPC codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectKind {
    /// Unknown master or node.
    NotFound,
    /// A value is out of range or malformed.
    Invalid,
    /// The state does not allow it now (failover running, stale epoch, paused, ...).
    Precondition,
}

/// A command that was applied but refused by the state machine; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// Category.
    pub kind: RejectKind,
    /// Sentinel-compatible message (may start with an error code such as `INPROG`).
    pub message: String,
}

impl Rejection {
    fn not_found() -> Rejection {
        Rejection {
            kind: RejectKind::NotFound,
            message: "No such master with that name".into(),
        }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Rejection {
        Rejection {
            kind: RejectKind::Invalid,
            message: message.into(),
        }
    }
    fn precondition(message: impl Into<String>) -> Rejection {
        Rejection {
            kind: RejectKind::Precondition,
            message: message.into(),
        }
    }
}

/// Result of applying one command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Outcome for the proposer.
    pub result: Result<Outcome, Rejection>,
    /// Events to publish (empty when rejected).
    pub events: Vec<Event>,
}

/// The snapshot bytes could not be read.
#[derive(Debug, thiserror::Error)]
#[error("corrupt state snapshot: {0}")]
pub struct SnapshotError(String);

impl ClusterState {
    /// A fresh state whose members are the initial voters.
    pub fn with_voters(voters: impl IntoIterator<Item = (NodeId, Option<String>)>) -> Self {
        let members = voters
            .into_iter()
            .map(|(id, peer_addr)| {
                let info = MemberInfo {
                    peer_addr,
                    ..MemberInfo::default()
                };
                (id, Member { voter: true, info })
            })
            .collect();
        ClusterState {
            members,
            ..ClusterState::default()
        }
    }

    /// Snapshot bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state always serializes")
    }

    /// Restores from snapshot bytes.
    pub fn from_bytes(data: &[u8]) -> Result<Self, SnapshotError> {
        serde_json::from_slice(data).map_err(|e| SnapshotError(e.to_string()))
    }

    /// Applies a committed command at `index`. Deterministic: depends only on the state and
    /// the command. A rejected command changes nothing but `applied_index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Applied {
        assert!(
            index > self.applied_index,
            "apply gap or regression: index {index} after {}",
            self.applied_index
        );
        if let Command::Batch { commands } = cmd {
            // One outcome for the whole entry: how many of its commands applied.
            let all = self.apply_batch(index, commands);
            let count = all.iter().filter(|a| a.result.is_ok()).count() as u64;
            return Applied {
                result: Ok(Outcome { count }),
                events: all.into_iter().flat_map(|a| a.events).collect(),
            };
        }
        self.applied_index = index;
        self.apply_one(cmd)
    }

    /// Applies the commands of a [`Command::Batch`] at `index`, in order, each exactly as
    /// if it were the only command of its entry (a refused one changes nothing, the others
    /// still apply); returns each one's outcome, in order.
    pub fn apply_batch(&mut self, index: u64, commands: &[Command]) -> Vec<Applied> {
        assert!(
            index > self.applied_index,
            "apply gap or regression: index {index} after {}",
            self.applied_index
        );
        self.applied_index = index;
        commands.iter().map(|c| self.apply_one(c)).collect()
    }

    fn apply_one(&mut self, cmd: &Command) -> Applied {
        let mut events = Vec::new();
        let result = self.apply_inner(cmd, &mut events);
        if result.is_err() {
            events.clear();
        } else if !self.votes_expire() {
            // Below vote expiry there is no log clock: format 1 builds kept none (a snapshot
            // of theirs has none), so one kept here would differ between a node that
            // restored such a snapshot and one that replayed the log. It starts at the
            // entry that raises the version (`apply_cluster_version`).
            self.clock_ms = 0;
        } else if let Some(t) = entry_time(cmd) {
            self.clock_ms = self.clock_ms.max(t);
        }
        Applied { result, events }
    }

    /// Whether down votes expire: decided by the committed cluster version, so that every
    /// node decides each entry as the oldest member's build does (see
    /// [`super::VOTE_EXPIRY_VERSION`]). Every node switches at the same entry, and a snapshot
    /// carries the version, so a restored node decides as one that replayed the log.
    pub fn votes_expire(&self) -> bool {
        self.cluster_version() >= super::VOTE_EXPIRY_VERSION
    }

    /// The time an evaluation without an entry time of its own (membership change, `SET`)
    /// is made at: the log clock once votes expire; before that the newest observation of
    /// the master, as format 1 builds took it (its only use there is the ODOWN start time).
    fn untimed_eval_ms(expire: bool, clock_ms: u64, m: &MasterState) -> u64 {
        if expire {
            clock_ms
        } else {
            m.observations.values().map(|o| o.at_ms).max().unwrap_or(0)
        }
    }

    /// The committed command format version: commands of a newer format must not be
    /// proposed (a member could not read them).
    pub fn cluster_version(&self) -> u32 {
        self.cluster_version.max(super::BASE_VERSION)
    }

    /// The version every member reads, by their announcements: what the cluster version may
    /// be raised to.
    pub fn members_version(&self) -> u32 {
        self.members
            .values()
            .map(|m| m.info.command_version.unwrap_or(super::BASE_VERSION))
            .min()
            .unwrap_or(super::BASE_VERSION)
    }

    /// Records that an entry without a command (leader no-op, conf change) was applied.
    pub fn skip(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "apply gap or regression: index {index} after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    /// Replaces the member set after a Raft configuration change at `index`. Observations of
    /// nodes that left are dropped, which may end an ODOWN (evaluated at `clock_ms`: the
    /// entry carries no time, and a local clock would differ between nodes).
    pub fn set_membership(
        &mut self,
        index: u64,
        voters: &BTreeSet<NodeId>,
        learners: &BTreeSet<NodeId>,
        added: Option<(NodeId, String)>,
    ) -> Vec<Event> {
        let (expire, clock_ms) = (self.votes_expire(), self.clock_ms);
        self.skip(index);
        let mut events = Vec::new();
        let mut members = BTreeMap::new();
        for (&id, voter) in voters
            .iter()
            .map(|id| (id, true))
            .chain(learners.iter().map(|id| (id, false)))
        {
            let mut m = self.members.get(&id).cloned().unwrap_or_default();
            m.voter = voter;
            if let Some((aid, addr)) = &added {
                if *aid == id {
                    m.info.peer_addr = Some(addr.clone());
                }
            }
            members.insert(id, m);
        }
        self.members = members;
        for m in self.masters.values_mut() {
            let before = m.observations.len();
            m.observations.retain(|id, _| voters.contains(id));
            if m.observations.len() != before {
                let at_ms = Self::untimed_eval_ms(expire, clock_ms, m);
                m.recompute_odown(at_ms, expire, &mut events);
            }
        }
        events
    }

    fn master_mut(&mut self, name: &str) -> Result<&mut MasterState, Rejection> {
        self.masters.get_mut(name).ok_or_else(Rejection::not_found)
    }

    /// The size limits in force (they depend on the committed cluster version, see
    /// `fsm::limits`).
    fn limits(&self) -> Limits {
        Limits::at(self.cluster_version())
    }

    /// Appends a failover record, dropping the oldest record of the same master beyond
    /// [`HISTORY_LIMIT`]: one flapping master cannot push another's switches out, which a
    /// watch resuming from an epoch relies on. (Before the limits' format: the oldest record
    /// of any master beyond the shared [`LEGACY_HISTORY_LIMIT`], as format 1 did.)
    fn push_history(&mut self, rec: FailoverRecord) {
        let master = rec.master.clone();
        self.history.push_back(rec);
        if !self.limits().on {
            while self.history.len() > LEGACY_HISTORY_LIMIT {
                if let Some(old) = self.history.pop_front() {
                    // Still recorded for watch resumption on the nodes that serve it.
                    if let Some(m) = self.masters.get_mut(&old.master) {
                        m.history_dropped_epoch = m.history_dropped_epoch.max(old.epoch);
                    }
                }
            }
            return;
        }
        let mut count = self.history.iter().filter(|r| r.master == master).count();
        while count > HISTORY_LIMIT {
            let Some(pos) = self.history.iter().position(|r| r.master == master) else {
                break;
            };
            if let Some(old) = self.history.remove(pos) {
                if let Some(m) = self.masters.get_mut(&master) {
                    m.history_dropped_epoch = m.history_dropped_epoch.max(old.epoch);
                }
            }
            count -= 1;
        }
    }

    fn history_mut(&mut self, master: &str, epoch: Epoch) -> Option<&mut FailoverRecord> {
        self.history
            .iter_mut()
            .rev()
            .find(|r| r.master == master && r.epoch == epoch)
    }

    fn apply_inner(
        &mut self,
        cmd: &Command,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        match cmd {
            Command::Bootstrap { masters } => self.apply_bootstrap(masters, events),
            Command::Monitor { spec } => self.apply_monitor(spec, events),
            Command::Remove { name } => self.apply_remove(name, events),
            Command::Set { name, options } => self.apply_set(name, options, events),
            Command::Reset { pattern } => self.apply_reset(pattern, events),
            Command::Observe {
                node,
                master,
                addr,
                down,
                reason,
                at_ms,
            } => self.apply_observe(node, master, addr, down, reason, at_ms, events),
            Command::Replicas { master, replicas } => self.apply_replicas(master, replicas, events),
            Command::ForgetReplicas { master, replicas } => {
                self.apply_forget_replicas(master, replicas, events)
            }
            Command::FailoverRequest {
                master,
                reason,
                target,
                at_ms,
            } => self.apply_failover_request(master, reason, target, at_ms),
            Command::FailoverStart {
                master,
                epoch,
                candidate,
                reason,
                leader,
                at_ms,
            } => self.apply_failover_start(master, epoch, candidate, reason, leader, at_ms, events),
            Command::FailoverDone {
                master,
                epoch,
                new_addr,
                at_ms,
            } => self.apply_failover_done(master, epoch, new_addr, at_ms, events),
            Command::FailoverAbort {
                master,
                epoch,
                why,
                at_ms,
            } => self.apply_failover_abort(master, epoch, why, at_ms, events),
            Command::Reconf {
                master,
                epoch,
                replica,
                stage,
            } => self.apply_reconf(master, epoch, replica, stage, events),
            Command::FailoverEnd {
                master,
                epoch,
                timed_out,
                at_ms,
            } => self.apply_failover_end(master, epoch, timed_out, at_ms, events),
            Command::Fence {
                master,
                epoch,
                instance,
                kind,
            } => self.apply_fence(master, epoch, instance, kind, events),
            Command::Pause { master } => self.apply_pause(master, events),
            Command::Resume { master } => self.apply_resume(master, events),
            Command::ClusterVersion { version } => self.apply_cluster_version(version, events),
            Command::SyncHold {
                master,
                instance,
                node,
                original,
                at_ms,
            } => self.apply_sync_hold(master, instance, node, original, at_ms),
            Command::Batch { .. } => Err(Rejection::invalid("a batch cannot hold a batch")),
            Command::Announce { node, info } => match self.members.get_mut(node) {
                Some(m) => {
                    for (what, v) in [
                        ("peer address", &info.peer_addr),
                        ("sentinel address", &info.sentinel_addr),
                        ("gRPC address", &info.grpc_addr),
                    ] {
                        lim.check(check_len(
                            what,
                            v.as_deref().unwrap_or(""),
                            MAX_NAME_LEN + 8,
                        ))?;
                    }
                    lim.check(check_len(
                        "run id",
                        info.run_id.as_deref().unwrap_or(""),
                        MAX_RUN_ID_LEN,
                    ))?;
                    // The peer address comes from the Raft configuration; keep it if the
                    // announcement leaves it out.
                    let peer_addr = info.peer_addr.clone().or(m.info.peer_addr.take());
                    m.info = MemberInfo {
                        peer_addr,
                        ..info.clone()
                    };
                    Ok(Outcome::default())
                }
                None => Err(Rejection {
                    kind: RejectKind::NotFound,
                    message: format!("node {node} is not a member"),
                }),
            },
        }
    }

    fn apply_bootstrap(
        &mut self,
        masters: &[MasterSpec],
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        if self.bootstrapped {
            return Ok(Outcome::default());
        }
        for spec in masters {
            if validate_spec(spec, lim).is_ok()
                && !self.masters.contains_key(&spec.name)
                && self.masters.len() < lim.max_masters()
            {
                self.insert_master(spec, events);
            }
        }
        self.bootstrapped = true;
        Ok(Outcome::default())
    }

    fn apply_monitor(
        &mut self,
        spec: &MasterSpec,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        validate_spec(spec, lim)?;
        if let Some(m) = self.masters.get(&spec.name) {
            let same_addr = m.addr == spec.addr || m.monitored_addr == spec.addr;
            if same_addr && m.quorum == spec.quorum {
                return Ok(Outcome::default());
            }
            return Err(Rejection::invalid("Duplicate master name."));
        }
        if self.masters.len() >= lim.max_masters() {
            return Err(Rejection::invalid(format!(
                "replicated state limit: at most {} masters are monitored (the state must fit one snapshot message)",
                lim.max_masters()
            )));
        }
        self.insert_master(spec, events);
        Ok(Outcome::default())
    }

    fn apply_remove(&mut self, name: &str, events: &mut Vec<Event>) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let m = self.masters.remove(name).ok_or_else(Rejection::not_found)?;
        // Its history goes with it, or masters added and removed would grow the
        // state without bound.
        if lim.on {
            self.history.retain(|r| r.master != name);
        }
        events.push(Event::new("-monitor", m.details(), Some(name)));
        Ok(Outcome::default())
    }

    fn apply_reset(
        &mut self,
        pattern: &str,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        lim.check(check_len("pattern", pattern, MAX_NAME_LEN))?;
        let mut count = 0;
        for m in self.masters.values_mut() {
            if !glob_match(pattern.as_bytes(), m.name.as_bytes()) {
                continue;
            }
            count += 1;
            m.replicas.clear();
            m.observations.clear();
            m.odown_since_ms = None;
            m.failover_request = None;
            m.failover = None;
            m.reconf = None;
            m.recent_failovers_ms.clear();
            events.push(Event::new("+reset-master", m.details(), Some(&m.name)));
        }
        Ok(Outcome { count })
    }

    // One parameter per field of the command, as for every other apply_*.
    #[allow(clippy::too_many_arguments)]
    fn apply_observe(
        &mut self,
        node: &NodeId,
        master: &str,
        addr: &Addr,
        down: &bool,
        reason: &ObserveReason,
        at_ms: &u64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        if !self.members.is_empty() && !self.members.get(node).is_some_and(|m| m.voter) {
            return Err(Rejection::precondition(format!(
                "node {node} is not a voting member"
            )));
        }
        let expire = self.votes_expire();
        let m = self.master_mut(master)?;
        if &m.addr != addr {
            return Err(Rejection::precondition(
                "observation is about a previous master address",
            ));
        }
        let was_down = m.observations.get(node).is_some_and(|o| o.down);
        m.observations.insert(
            *node,
            Observation {
                down: *down,
                reason: *reason,
                at_ms: *at_ms,
                ignored: false,
            },
        );
        if was_down != *down {
            let kind = if *down { "+sdown" } else { "-sdown" };
            events.push(Event::new(kind, m.details(), Some(master)).of_node(*node));
        }
        m.recompute_odown(*at_ms, expire, events);
        Ok(Outcome::default())
    }

    fn apply_replicas(
        &mut self,
        master: &str,
        replicas: &[Addr],
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let m = self.master_mut(master)?;
        for r in replicas {
            // Bounded state: over-long hosts and replicas past the limit are not
            // recorded (the leader proposes what a Redis INFO reports).
            if lim.check(check_addr("replica", r)).is_err()
                || (m.replicas.len() >= lim.max_replicas() && !m.replicas.contains(r))
            {
                continue;
            }
            if r != &m.addr && m.replicas.insert(r.clone()) {
                events.push(Event::new(
                    "+slave",
                    replica_details(r, &m.name, &m.addr),
                    Some(master),
                ));
            }
        }
        Ok(Outcome::default())
    }

    fn apply_forget_replicas(
        &mut self,
        master: &str,
        replicas: &[Addr],
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let m = self.master_mut(master)?;
        // Never the ones a failover is working with.
        let busy: BTreeSet<&Addr> = m
            .failover
            .iter()
            .map(|f| &f.candidate)
            .chain(m.reconf.iter().flat_map(|r| r.replicas.keys()))
            .collect();
        let gone: Vec<Addr> = replicas
            .iter()
            .filter(|r| m.replicas.contains(*r) && !busy.contains(r))
            .cloned()
            .collect();
        for r in &gone {
            m.replicas.remove(r);
            events.push(Event::new(
                "-slave",
                replica_details(r, &m.name, &m.addr),
                Some(master),
            ));
        }
        Ok(Outcome {
            count: gone.len() as u64,
        })
    }

    fn apply_failover_request(
        &mut self,
        master: &str,
        reason: &FailoverReason,
        target: &Option<Addr>,
        at_ms: &u64,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let index = self.applied_index;
        let m = self.master_mut(master)?;
        if *reason == FailoverReason::Odown {
            return Err(Rejection::invalid(
                "only forced failovers and switchovers can be requested",
            ));
        }
        if m.failover.is_some() || m.failover_request.is_some() {
            return Err(Rejection::precondition(
                "INPROG Failover already in progress",
            ));
        }
        if target.as_ref() == Some(&m.addr) {
            return Err(Rejection::invalid("the target is already the master"));
        }
        if let Some(t) = target {
            lim.check(check_addr("target", t))?;
        }
        m.failover_request = Some(FailoverRequestState {
            reason: *reason,
            target: target.clone(),
            at_ms: *at_ms,
            index,
        });
        Ok(Outcome { count: index })
    }

    // One parameter per field of the command, as for every other apply_*.
    #[allow(clippy::too_many_arguments)]
    fn apply_failover_start(
        &mut self,
        master: &str,
        epoch: &Epoch,
        candidate: &Addr,
        reason: &FailoverReason,
        leader: &NodeId,
        at_ms: &u64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let expire = self.votes_expire();
        let current_epoch = self.current_epoch;
        let m = self.master_mut(master)?;
        if *epoch <= current_epoch {
            return Err(Rejection::precondition(format!(
                "stale epoch {epoch}: current epoch is {current_epoch}"
            )));
        }
        if m.failover.is_some() {
            return Err(Rejection::precondition(
                "INPROG Failover already in progress",
            ));
        }
        if candidate == &m.addr {
            return Err(Rejection::invalid("the candidate is the current master"));
        }
        lim.check(check_addr("candidate", candidate))?;
        if *reason == FailoverReason::Odown {
            if m.paused {
                return Err(Rejection::precondition(
                    "failover is paused for this master",
                ));
            }
            if !m.is_odown() {
                return Err(Rejection::precondition("master is not objectively down"));
            }
            // The decision is checked against the leader's clock: votes that went
            // stale since ODOWN was reached (their nodes stopped affirming) do not count.
            // (Not below vote expiry: a format 1 build accepts it.)
            let fresh = m.down_votes_at(*at_ms);
            if expire && fresh < m.quorum as usize {
                return Err(Rejection::precondition(format!(
                    "master is not objectively down: {fresh} of {} down votes are recent",
                    m.quorum
                )));
            }
            if !m.budget_allows(*at_ms) {
                return Err(Rejection::precondition(format!(
                    "failover budget spent: {} automatic failovers in {} ms",
                    m.failovers_in_window(*at_ms),
                    m.failover_budget_window_ms
                )));
            }
            let window = m.failover_budget_window_ms;
            m.recent_failovers_ms
                .retain(|&t| at_ms.saturating_sub(t) < window);
            m.recent_failovers_ms.push(*at_ms);
        }
        if *reason != FailoverReason::Odown {
            m.failover_request = None;
        }
        m.failover = Some(FailoverState {
            epoch: *epoch,
            candidate: candidate.clone(),
            reason: *reason,
            leader: *leader,
            started_at_ms: *at_ms,
        });
        let details = m.details();
        let cand = replica_details(candidate, &m.name, &m.addr);
        let from = m.addr.clone();
        let name = Some(master);
        events.push(Event::new("+new-epoch", epoch.to_string(), name));
        events.push(Event::new("+try-failover", details.clone(), name));
        events.push(Event::new("+elected-leader", details.clone(), name));
        events.push(Event::new("+failover-state-select-slave", details, name));
        events.push(Event::new("+selected-slave", cand.clone(), name));
        events.push(Event::new("+failover-state-send-slaveof-noone", cand, name));
        self.current_epoch = *epoch;
        self.push_history(FailoverRecord {
            master: master.to_string(),
            epoch: *epoch,
            reason: *reason,
            from,
            candidate: Some(candidate.clone()),
            leader: *leader,
            started_at_ms: *at_ms,
            promoted_at_ms: None,
            promoted_index: None,
            ended_at_ms: None,
            outcome: "running".into(),
        });
        Ok(Outcome::default())
    }

    fn apply_failover_done(
        &mut self,
        master: &str,
        epoch: &Epoch,
        new_addr: &Addr,
        at_ms: &u64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let m = self.master_mut(master)?;
        let f = match &m.failover {
            Some(f) if f.epoch == *epoch && &f.candidate == new_addr => f.clone(),
            _ => {
                return Err(Rejection::precondition(format!(
                    "no failover of epoch {epoch} promoting {new_addr}"
                )))
            }
        };
        let old = m.addr.clone();
        events.push(Event::new(
            "+promoted-slave",
            replica_details(new_addr, &m.name, &old),
            Some(master),
        ));
        events.push(Event::new(
            "+failover-state-reconf-slaves",
            m.details(),
            Some(master),
        ));
        m.addr = new_addr.clone();
        m.config_epoch = *epoch;
        m.replicas.remove(new_addr);
        m.replicas.insert(old.clone());
        m.observations.clear();
        m.odown_since_ms = None;
        m.failover = None;
        m.reconf = Some(ReconfState {
            epoch: *epoch,
            started_at_ms: f.started_at_ms,
            old_addr: old.clone(),
            replicas: BTreeMap::new(),
        });
        events.push(
            Event::new(
                "+switch-master",
                format!(
                    "{master} {} {} {} {}",
                    old.host, old.port, new_addr.host, new_addr.port
                ),
                Some(master),
            )
            .of_switch(*epoch, f.leader),
        );
        for r in &m.replicas {
            events.push(Event::new(
                "+slave",
                replica_details(r, &m.name, &m.addr),
                Some(master),
            ));
        }
        let index = self.applied_index;
        if let Some(rec) = self.history_mut(master, *epoch) {
            rec.promoted_at_ms = Some(*at_ms);
            rec.promoted_index = Some(index);
            rec.outcome = "promoted".into();
        }
        Ok(Outcome::default())
    }

    fn apply_failover_abort(
        &mut self,
        master: &str,
        epoch: &Epoch,
        why: &str,
        at_ms: &u64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let current_epoch = self.current_epoch;
        let m = self.master_mut(master)?;
        let code = why.split(':').next().unwrap_or("").trim();
        let kind = match code {
            "no-good-slave" | "slave-timeout" | "not-elected" => {
                format!("-failover-abort-{code}")
            }
            _ => "-failover-abort".to_string(),
        };
        match &m.failover {
            Some(f) if f.epoch == *epoch => {
                m.failover = None;
                events.push(Event::new(kind, m.details(), Some(master)));
                if let Some(rec) = self.history_mut(master, *epoch) {
                    rec.ended_at_ms = Some(*at_ms);
                    rec.outcome = format!("aborted: {}", lim.reason(why));
                }
                Ok(Outcome::default())
            }
            // Epoch 0: a failover that could not even start (no candidate). Recorded
            // in history so operators can see why nothing happened; state unchanged.
            None if *epoch == 0 => {
                let from = m.addr.clone();
                let reason = m
                    .failover_request
                    .take()
                    .map_or(FailoverReason::Odown, |r| r.reason);
                events.push(Event::new(kind, m.details(), Some(master)));
                self.push_history(FailoverRecord {
                    master: master.to_string(),
                    epoch: current_epoch,
                    reason,
                    from,
                    candidate: None,
                    leader: 0,
                    started_at_ms: *at_ms,
                    promoted_at_ms: None,
                    promoted_index: None,
                    ended_at_ms: Some(*at_ms),
                    outcome: format!("aborted: {}", lim.reason(why)),
                });
                Ok(Outcome::default())
            }
            _ => Err(Rejection::precondition(format!(
                "no failover of epoch {epoch} in progress"
            ))),
        }
    }

    fn apply_reconf(
        &mut self,
        master: &str,
        epoch: &Epoch,
        replica: &Addr,
        stage: &ReconfStage,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let m = self.master_mut(master)?;
        let addr = m.addr.clone();
        let name = m.name.clone();
        let r = match &mut m.reconf {
            Some(r) if r.epoch == *epoch => r,
            _ => {
                return Err(Rejection::precondition(format!(
                    "no reconfiguration of epoch {epoch}"
                )))
            }
        };
        if r.replicas.get(replica) == Some(stage) {
            return Ok(Outcome::default());
        }
        lim.check(check_addr("replica", replica))?;
        if r.replicas.len() > lim.max_replicas() && !r.replicas.contains_key(replica) {
            return Err(Rejection::invalid(format!(
                "at most {} replicas are tracked in one reconfiguration",
                lim.max_replicas() + 1
            )));
        }
        r.replicas.insert(replica.clone(), *stage);
        let kind = match stage {
            ReconfStage::Sent => "+slave-reconf-sent",
            ReconfStage::InProgress => "+slave-reconf-inprog",
            ReconfStage::Done => "+slave-reconf-done",
            ReconfStage::TimedOut => "-slave-reconf-sent-timeout",
        };
        events.push(Event::new(
            kind,
            replica_details(replica, &name, &addr),
            Some(master),
        ));
        Ok(Outcome::default())
    }

    fn apply_failover_end(
        &mut self,
        master: &str,
        epoch: &Epoch,
        timed_out: &bool,
        at_ms: &u64,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let m = self.master_mut(master)?;
        if !matches!(&m.reconf, Some(r) if r.epoch == *epoch) {
            return Err(Rejection::precondition(format!(
                "no reconfiguration of epoch {epoch}"
            )));
        }
        m.reconf = None;
        if *timed_out {
            events.push(Event::new(
                "+failover-end-for-timeout",
                m.details(),
                Some(master),
            ));
        }
        events.push(Event::new("+failover-end", m.details(), Some(master)));
        if let Some(rec) = self.history_mut(master, *epoch) {
            rec.ended_at_ms = Some(*at_ms);
            rec.outcome = if *timed_out { "timed_out" } else { "ended" }.into();
        }
        Ok(Outcome::default())
    }

    fn apply_fence(
        &mut self,
        master: &str,
        epoch: &Epoch,
        instance: &Addr,
        kind: &FenceKind,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let lim = self.limits();
        let m = self.master_mut(master)?;
        if m.config_epoch != *epoch || m.failover.is_some() {
            return Err(Rejection::precondition(
                "the master changed since the fencing decision",
            ));
        }
        if instance == &m.addr {
            return Err(Rejection::invalid("cannot fence the current master"));
        }
        lim.check(check_addr("instance", instance))?;
        // A demoted instance is a replica from now on (while the bound allows).
        if m.replicas.len() < lim.max_replicas() {
            m.replicas.insert(instance.clone());
        }
        let event = match kind {
            FenceKind::ConvertToSlave => "+convert-to-slave",
            FenceKind::FixSlaveConfig => "+fix-slave-config",
        };
        events.push(Event::new(
            event,
            replica_details(instance, &m.name, &m.addr),
            Some(master),
        ));
        Ok(Outcome::default())
    }

    fn apply_pause(&mut self, master: &str, events: &mut Vec<Event>) -> Result<Outcome, Rejection> {
        let m = self.master_mut(master)?;
        if !m.paused {
            m.paused = true;
            events.push(Event::new("+pause-failover", m.details(), Some(master)));
        }
        Ok(Outcome::default())
    }

    fn apply_resume(
        &mut self,
        master: &str,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let m = self.master_mut(master)?;
        if m.paused {
            m.paused = false;
            events.push(Event::new("-pause-failover", m.details(), Some(master)));
        }
        Ok(Outcome::default())
    }

    fn apply_cluster_version(
        &mut self,
        version: &u32,
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let readers = self
            .members
            .iter()
            .filter(|(_, m)| m.info.command_version.unwrap_or(super::BASE_VERSION) < *version)
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>();
        if !readers.is_empty() {
            return Err(Rejection {
                kind: RejectKind::Precondition,
                message: format!(
                    "nodes {} do not read command format {version}",
                    readers.join(", ")
                ),
            });
        }
        if *version > self.cluster_version() {
            if !self.votes_expire() && *version >= super::VOTE_EXPIRY_VERSION {
                // Votes expire from here on, judged against a log clock that nodes did not
                // keep until now (see `apply_one`): start it at the newest observation in the
                // state, which every node holds alike. The next entry with a time moves it on.
                self.clock_ms = self
                    .masters
                    .values()
                    .flat_map(|m| m.observations.values().map(|o| o.at_ms))
                    .max()
                    .unwrap_or(0);
            }
            self.cluster_version = *version;
            events.push(Event::new(
                "+cluster-version",
                format!("command format {version}"),
                None,
            ));
        }
        Ok(Outcome::default())
    }

    fn apply_sync_hold(
        &mut self,
        master: &str,
        instance: &Addr,
        node: &NodeId,
        original: &Option<(String, String)>,
        at_ms: &u64,
    ) -> Result<Outcome, Rejection> {
        match original {
            Some((diskless, delay)) => {
                check_len("repl-diskless-sync", diskless, MAX_SYNC_VALUE_LEN)?;
                check_len("repl-diskless-sync-delay", delay, MAX_SYNC_VALUE_LEN)?;
                let m = self.masters.get(master).ok_or_else(Rejection::not_found)?;
                // The first record wins: a later one may have read the hold itself.
                if !self.sync_holds.contains_key(instance) {
                    if self.sync_holds.len() >= MAX_SYNC_HOLDS {
                        return Err(Rejection::precondition("too many sync holds"));
                    }
                    let rec = SyncHoldRecord {
                        master: master.to_string(),
                        owner: *node,
                        diskless_sync: diskless.clone(),
                        diskless_sync_delay: delay.clone(),
                        since_ms: *at_ms,
                        auth_user: m.auth_user.clone(),
                        auth_pass: m.auth_pass.clone(),
                        tls: m.tls,
                    };
                    self.sync_holds.insert(instance.clone(), rec);
                }
            }
            None => {
                if self
                    .sync_holds
                    .get(instance)
                    .is_some_and(|r| r.master == master)
                {
                    self.sync_holds.remove(instance);
                }
            }
        }
        Ok(Outcome::default())
    }

    fn insert_master(&mut self, spec: &MasterSpec, events: &mut Vec<Event>) {
        let m = MasterState::from_spec(spec);
        events.push(Event::new(
            "+monitor",
            format!("{} quorum {}", m.details(), m.quorum),
            Some(&m.name),
        ));
        self.masters.insert(spec.name.clone(), m);
    }

    fn apply_set(
        &mut self,
        name: &str,
        options: &[(String, String)],
        events: &mut Vec<Event>,
    ) -> Result<Outcome, Rejection> {
        let (expire, clock) = (self.votes_expire(), self.clock_ms);
        let lim = self.limits();
        let m = self.master_mut(name)?;
        // Validate everything first: unlike Sentinel, a bad option changes nothing.
        let mut staged = m.clone();
        let mut set_events = Vec::new();
        for (opt, val) in options {
            let lower = opt.to_ascii_lowercase();
            let bad =
                || Rejection::invalid(format!("Invalid argument '{val}' for SENTINEL SET '{opt}'"));
            let positive = || val.parse::<u64>().ok().filter(|&v| v > 0).ok_or_else(bad);
            let shown = match lower.as_str() {
                "down-after-milliseconds" => {
                    staged.down_after_ms = positive()?;
                    val.clone()
                }
                "failover-timeout" => {
                    staged.failover_timeout_ms = positive()?;
                    val.clone()
                }
                "parallel-syncs" => {
                    staged.parallel_syncs = u32::try_from(positive()?).map_err(|_| bad())?;
                    val.clone()
                }
                "quorum" => {
                    staged.quorum = u32::try_from(positive()?).map_err(|_| bad())?;
                    val.clone()
                }
                "master-reboot-down-after-period" => {
                    staged.reboot_down_after_ms = val.parse::<u64>().map_err(|_| bad())?;
                    val.clone()
                }
                "failover-budget" => {
                    staged.failover_budget = val.parse::<u32>().map_err(|_| bad())?;
                    val.clone()
                }
                "replica-forget-after" => {
                    staged.replica_forget_after_ms = val.parse::<u64>().map_err(|_| bad())?;
                    val.clone()
                }
                "failover-budget-window" => {
                    staged.failover_budget_window_ms = positive()?;
                    val.clone()
                }
                "auth-pass" => {
                    lim.check(check_len("auth-pass", val, MAX_SECRET_LEN))?;
                    staged.auth_pass = (!val.is_empty()).then(|| val.clone());
                    "******".to_string()
                }
                "auth-user" => {
                    lim.check(check_len("auth-user", val, MAX_NAME_LEN))?;
                    staged.auth_user = (!val.is_empty()).then(|| val.clone());
                    val.clone()
                }
                // Whether a node may set these (deny_scripts_reconfig) and whether the path is
                // executable are checked by the node that proposes the SET; here only the form.
                "notification-script" => {
                    check_script(val).map_err(|_| bad())?;
                    staged.notification_script = (!val.is_empty()).then(|| val.clone());
                    val.clone()
                }
                "client-reconfig-script" => {
                    check_script(val).map_err(|_| bad())?;
                    staged.client_reconfig_script = (!val.is_empty()).then(|| val.clone());
                    val.clone()
                }
                _ => {
                    return Err(Rejection::invalid(format!(
                        "Unknown option or number of arguments for SENTINEL SET '{opt}'"
                    )))
                }
            };
            set_events.push(Event::new(
                "+set",
                format!("{} {} {}", staged.details(), opt, shown),
                Some(name),
            ));
        }
        let quorum_changed = staged.quorum != m.quorum;
        *m = staged;
        events.extend(set_events);
        if quorum_changed {
            let at_ms = Self::untimed_eval_ms(expire, clock, m);
            m.recompute_odown(at_ms, expire, events);
        }
        Ok(Outcome::default())
    }
}

/// The proposer's clock carried by a command, if it has one.
fn entry_time(cmd: &Command) -> Option<u64> {
    match cmd {
        Command::Observe { at_ms, .. }
        | Command::FailoverRequest { at_ms, .. }
        | Command::FailoverStart { at_ms, .. }
        | Command::FailoverDone { at_ms, .. }
        | Command::FailoverAbort { at_ms, .. }
        | Command::FailoverEnd { at_ms, .. } => Some(*at_ms),
        _ => None,
    }
}

/// A script path: empty (none) or absolute, bounded, without control characters.
fn check_script(path: &str) -> Result<(), Rejection> {
    if !script_ok(path) {
        return Err(script_rejection(path));
    }
    Ok(())
}

fn script_rejection(path: &str) -> Rejection {
    Rejection::invalid(format!(
        "script path must be absolute, without control characters: {path:?}"
    ))
}

/// `check_spec` worded as Sentinel's `SENTINEL MONITOR` words it.
fn validate_spec(spec: &MasterSpec, lim: Limits) -> Result<(), Rejection> {
    check_spec(spec, lim).map_err(|p| match p {
        SpecProblem::Script { path, .. } => script_rejection(&path),
        SpecProblem::TooLong { field, len, max } => {
            let what = match field {
                SpecField::Name => "master name",
                SpecField::Addr => "master host",
                SpecField::AuthUser => "auth-user",
                _ => "auth-pass",
            };
            Rejection::invalid(format!("{what} is {len} bytes long; the limit is {max}"))
        }
        SpecProblem::HostQuote => Rejection::invalid("master host contains a quote or a backslash"),
        SpecProblem::Zero(SpecField::Quorum) => Rejection::invalid("Quorum must be 1 or greater."),
        SpecProblem::BadName => Rejection::invalid("Invalid master name."),
        SpecProblem::Zero(_) => Rejection::invalid(
            "down-after-milliseconds, failover-timeout and parallel-syncs must be greater than 0",
        ),
    })
}

#[cfg(test)]
mod version_tests {
    use super::*;
    use crate::fsm::{MemberInfo, SUPPORTED_VERSION};

    #[test]
    fn the_cluster_version_rises_only_when_every_member_reads_it() {
        let mut st = ClusterState::with_voters([(1, None), (2, None)]);
        assert_eq!(st.cluster_version(), 1);
        let announce = |node, v| Command::Announce {
            node,
            info: MemberInfo {
                command_version: v,
                ..MemberInfo::default()
            },
        };
        assert!(st
            .apply(10, &announce(1, Some(SUPPORTED_VERSION)))
            .result
            .is_ok());
        assert_eq!(st.members_version(), 1);
        let raise = Command::ClusterVersion { version: 2 };
        let r = st.apply(11, &raise);
        assert!(r.result.unwrap_err().message.contains("nodes 2"));
        assert_eq!(st.cluster_version(), 1);
        assert!(st
            .apply(12, &announce(2, Some(SUPPORTED_VERSION)))
            .result
            .is_ok());
        assert_eq!(st.members_version(), SUPPORTED_VERSION);
        let r = st.apply(13, &raise);
        assert!(r.result.is_ok());
        assert_eq!(r.events[0].kind, "+cluster-version");
        assert_eq!(st.cluster_version(), 2);
        // Never lowered.
        assert!(st
            .apply(14, &Command::ClusterVersion { version: 1 })
            .result
            .is_ok());
        assert_eq!(st.cluster_version(), 2);
    }
}
