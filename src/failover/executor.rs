//! The failover executor. Runs on every node and acts only while this node is the Raft
//! leader under a quorum confirmation younger than its lease, checked right before every
//! command it sends: a minority, or a leader deposed by one, never touches Redis.
//!
//! Per master it runs at most one job, chosen from the committed state:
//! - `Promote(epoch)` while a failover is in its promotion phase (also a half-done one
//!   left by a previous leader): promote the committed candidate, verify with `ROLE`,
//!   commit `FailoverDone`; abort with `slave-timeout` after `failover_timeout`, counted
//!   from when this leader took the job over, and only if the candidate does not already
//!   report master (a previous leader may have promoted it just before dying).
//! - `Reconf(epoch)` after the promotion: repoint the old master (first, always) and the
//!   other replicas (at most `parallel_syncs` in progress), commit each stage, then
//!   `FailoverEnd`.
//! - `Start` on ODOWN (not paused, budget left) or an operator request: choose a
//!   candidate, commit `FailoverStart` with a new epoch, or an epoch-0 `FailoverAbort`
//!   saying why none qualifies. The masters that need a start at one pass are decided
//!   together and proposed in one round with consecutive epochs (one entry once the cluster
//!   reads batches): K masters failing at once do not queue behind each other's epochs.
//!
//! Jobs of different masters run side by side: promotions of K masters go out in parallel.
//!
//! Outside failovers it fences: an instance reporting `role:master` that is not the
//! committed master is made a replica of it (only while that master is healthy here), and a
//! replica following the wrong master is repointed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::{sleep, Instant};
use tracing::{debug, info, info_span, warn, Instrument};

use super::actions::{self, FailoverTo};
use super::reconf::{plan_reconf, EndReason, Mark, Pass, Slots, Step as ReconfStep};
use super::select::{self, follows, healthy, SelectParams};
use crate::clock::wall_ms;
use crate::consensus::{ProposeError, RaftHandle, Role, PROPOSE_TIMEOUT};
use crate::fsm::{
    ClusterState, Command, FailoverReason, FailoverState, FenceKind, MasterState, ObserveReason,
    ReconfStage,
};
use crate::instance::info::RoleReply;
use crate::instance::link::{Auth, Connector, Link};
use crate::model::{Addr, Epoch};
use crate::shutdown::Shutdown;
use crate::view::{InstanceInfo, MonitorView, ReportedRole};

/// Polling period while a job waits for Redis to change.
const POLL: Duration = Duration::from_millis(10);
/// The main loop re-evaluates at least this often.
const TICK: Duration = Duration::from_millis(100);
/// Least time between two passes caused by changes of the monitor view alone.
const VIEW_COALESCE: Duration = Duration::from_millis(50);
/// How often `REPLICAOF NO ONE` may be re-sent to a candidate that does not report master.
const PROMOTE_RESEND: Duration = Duration::from_millis(1000);
/// Fencing of one instance is not repeated sooner than this.
const FENCE_RESEND: Duration = Duration::from_secs(1);
/// A replica following the wrong master this long (outside failovers) is repointed.
const FIX_REPLICA_AFTER: Duration = Duration::from_secs(2);
/// Longest write pause a switchover may impose on the old master (also its safety net:
/// the pause ends by itself if this node dies in the middle).
const MAX_SWITCHOVER_PAUSE_MS: u64 = 2_000;
/// How long a forced failover waits for the candidate to catch up with a paused old master.
const FORCED_CATCH_UP: Duration = Duration::from_millis(500);
/// After `FAILOVER TO` was accepted, an old master still idle and master this much later
/// means Redis rolled the handover back.
const SWITCHOVER_SETTLE: Duration = Duration::from_millis(1_000);
/// Longest wait between two tries of a fence that keeps failing.
const MAX_FENCE_BACKOFF: Duration = Duration::from_secs(60);
/// Longest wait between two committed no-candidate aborts of a master that stays down.
const MAX_ABORT_BACKOFF: Duration = Duration::from_secs(600);
/// How long a leadership check before fencing may take.
const LEADER_CHECK: Duration = Duration::from_millis(500);
/// A connection opened for a promotion that did not use it is closed after this.
const PREPARED_TTL: Duration = Duration::from_secs(5);
/// How long a failover of a master that restarted empty waits for INFO of its replicas taken
/// after the restart was seen (their probes refresh every 100 ms once the master is in
/// trouble): a replica may have full-synced from the empty master, and lost its data, since
/// its last INFO, and only a fresh offset shows it.
const EMPTY_RESTART_INFO_WAIT: Duration = Duration::from_millis(500);

/// Starts the executor; it ends at `shutdown`.
pub fn spawn(
    raft: RaftHandle,
    monitor_view: watch::Receiver<Arc<MonitorView>>,
    connector: Connector,
    shutdown: Shutdown,
) -> JoinHandle<()> {
    let span = info_span!("failover_executor", node_id = raft.node_id());
    let ex = Executor {
        ctx: Ctx {
            raft,
            view: monitor_view,
            connector,
            abort_rate: Arc::new(Mutex::new(BTreeMap::new())),
            fence_backoff: Arc::new(Mutex::new(BTreeMap::new())),
            epoch_floor: Arc::new(tokio::sync::Mutex::new(0)),
            prepared: Arc::new(Mutex::new(BTreeMap::new())),
        },
        to_start: Vec::new(),
        jobs: BTreeMap::new(),
        fences: BTreeMap::new(),
        wrong_master_since: BTreeMap::new(),
        budget_warned: BTreeMap::new(),
        active: false,
    };
    tokio::spawn(ex.run(shutdown).instrument(span))
}

/// What every job needs.
#[derive(Clone)]
struct Ctx {
    raft: RaftHandle,
    view: watch::Receiver<Arc<MonitorView>>,
    /// Opens every Redis connection of a failover (with the node's TLS material).
    connector: Connector,
    /// Per master, the last epoch-0 abort committed for ODOWN and the wait before the next
    /// (doubling while no candidate appears).
    abort_rate: Arc<Mutex<BTreeMap<String, (Instant, Duration)>>>,
    /// Per instance whose fence failed: failures in a row and the earliest next try.
    fence_backoff: Arc<Mutex<BTreeMap<Addr, (u32, Instant)>>>,
    /// The highest epoch this node has put in a start. Held by a round of starts while it
    /// numbers its epochs and queues them to Raft, so rounds reach the log in the order of
    /// their epochs (a start whose epoch is not above the committed one is refused) while a
    /// round need not wait for the previous one to commit.
    epoch_floor: Arc<tokio::sync::Mutex<Epoch>>,
    /// Connections to chosen candidates, opened while their start commits (opening one sends
    /// nothing to Redis), for the promotion to use: it then costs no connection set-up.
    prepared: Arc<Mutex<BTreeMap<Addr, (Instant, Link)>>>,
}

impl Ctx {
    /// This node may act on Redis: leader, with a quorum confirmation younger than the lease
    /// (see [`RaftHandle::has_leader_contact`]): no other leader can exist meanwhile.
    fn active(&self) -> bool {
        self.raft.status().role == Role::Leader && self.raft.has_leader_contact()
    }

    /// Checked right before every command that changes Redis (resends and best-effort
    /// sends included, and after the connection is open): this node still leads under a
    /// fresh quorum confirmation, and the committed state still calls for the command.
    fn may_send(&self, name: &str, still: impl FnOnce(&MasterState) -> bool) -> bool {
        if !self.active() {
            debug!("not sending: no fresh quorum confirmation of this leader");
            return false;
        }
        let ok = self.master(name).is_some_and(|(_, m)| still(&m));
        if !ok {
            debug!("not sending: the committed state moved on");
        }
        ok
    }

    fn view(&self) -> Arc<MonitorView> {
        self.view.borrow().clone()
    }

    /// A connection to `addr` opened for its promotion, if one is ready and recent.
    fn take_prepared(&self, addr: &Addr) -> Option<Link> {
        let mut p = self.prepared.lock();
        p.retain(|_, (at, _)| at.elapsed() < PREPARED_TTL);
        p.remove(addr).map(|(_, l)| l)
    }

    fn master(&self, name: &str) -> Option<(Arc<ClusterState>, MasterState)> {
        let st = self.raft.state();
        let m = st.masters.get(name)?.clone();
        Some((st, m))
    }

    async fn propose(&self, cmd: Command) -> Result<(), ProposeError> {
        let kind = cmd.kind();
        match self.raft.propose(cmd).await {
            Ok(_) => Ok(()),
            Err(e) => {
                match &e {
                    ProposeError::Rejected(_) => debug!(command = kind, error = %e, "refused"),
                    _ => warn!(command = kind, error = %e, "could not commit"),
                }
                Err(e)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum JobKey {
    Start,
    Promote(Epoch),
    Reconf(Epoch),
}

struct Job {
    key: JobKey,
    /// The masters started in one round share their task.
    handle: AbortHandle,
}

struct Executor {
    ctx: Ctx,
    jobs: BTreeMap<String, Job>,
    /// Masters found needing a start during the current pass.
    to_start: Vec<String>,
    fences: BTreeMap<Addr, (Instant, JoinHandle<()>)>,
    wrong_master_since: BTreeMap<Addr, Instant>,
    budget_warned: BTreeMap<String, Instant>,
    active: bool,
}

impl Executor {
    async fn run(mut self, mut shutdown: Shutdown) {
        let mut state_rx = self.ctx.raft.watch_state();
        let mut status_rx = self.ctx.raft.watch_status();
        let mut view_rx = self.ctx.view.clone();
        loop {
            self.tick();
            // Hundreds of probes write the view; a pass walks every master, so view changes
            // are taken at most every VIEW_COALESCE (decisions follow committed state, which
            // still wakes it at once).
            let view_settled = sleep(VIEW_COALESCE);
            tokio::select! {
                _ = shutdown.recv() => break,
                r = state_rx.changed() => if r.is_err() { break },
                r = status_rx.changed() => if r.is_err() { break },
                r = async { view_settled.await; view_rx.changed().await } => if r.is_err() { break },
                _ = sleep(TICK) => {}
            }
        }
        self.stand_down();
        debug!("failover executor stopped");
    }

    /// Stops every job: this node must not touch Redis any more.
    fn stand_down(&mut self) {
        for (_, j) in std::mem::take(&mut self.jobs) {
            j.handle.abort();
        }
        for (_, (_, h)) in std::mem::take(&mut self.fences) {
            h.abort();
        }
    }

    fn tick(&mut self) {
        let active = self.ctx.active();
        if active != self.active {
            info!(
                active,
                "failover executor {}",
                if active { "leading" } else { "standing by" }
            );
            self.active = active;
        }
        if !active {
            self.stand_down();
            return;
        }
        self.jobs.retain(|_, j| !j.handle.is_finished());
        self.fences
            .retain(|_, (at, h)| !h.is_finished() || at.elapsed() < FENCE_RESEND);
        let state = self.ctx.raft.state();
        let view = self.ctx.view();
        // Each master's instances, found in one pass: fencing looks at them on every tick.
        let mut by_master: BTreeMap<&str, Vec<&InstanceInfo>> = BTreeMap::new();
        for i in view.instances.values() {
            by_master.entry(i.master.as_str()).or_default().push(i);
        }
        for m in state.masters.values() {
            let own = by_master
                .get(m.name.as_str())
                .map_or(&[][..], Vec::as_slice);
            self.plan(m, &view, own);
        }
        drop(by_master);
        drop(view);
        self.start_round();
        self.jobs.retain(|name, j| {
            let keep = state.masters.contains_key(name);
            if !keep {
                j.handle.abort();
            }
            keep
        });
    }

    fn plan(&mut self, m: &MasterState, view: &MonitorView, own: &[&InstanceInfo]) {
        if !m.is_odown() {
            self.ctx.abort_rate.lock().remove(&m.name);
        }
        let key = if let Some(f) = &m.failover {
            Some(JobKey::Promote(f.epoch))
        } else if let Some(r) = &m.reconf {
            Some(JobKey::Reconf(r.epoch))
        } else if m.failover_request.is_some() {
            Some(JobKey::Start)
        } else if m.is_odown_at(wall_ms()) && !m.paused {
            if m.budget_allows(wall_ms()) {
                Some(JobKey::Start)
            } else {
                let warn_now = self
                    .budget_warned
                    .get(&m.name)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(10));
                if warn_now {
                    warn!(master = %m.name, budget = m.failover_budget, window_ms = m.failover_budget_window_ms,
                        "master is objectively down but its failover budget is spent");
                    self.budget_warned.insert(m.name.clone(), Instant::now());
                }
                None
            }
        } else {
            None
        };
        if let Some(job) = self.jobs.get(&m.name) {
            if Some(&job.key) == key.as_ref() {
                return;
            }
            // The committed state moved on; the old job has nothing left to do.
            job.handle.abort();
            self.jobs.remove(&m.name);
        }
        if m.failover.is_none() && m.reconf.is_none() {
            self.fence(m, view, own);
        }
        let Some(key) = key else {
            return;
        };
        let ctx = self.ctx.clone();
        let name = m.name.clone();
        let handle = match &key {
            JobKey::Start => {
                // Decided with the others of this pass (see `start_round`).
                self.to_start.push(name);
                return;
            }
            JobKey::Promote(epoch) => {
                let f = m.failover.clone().expect("promote job needs a failover");
                let span =
                    info_span!("failover", master = %name, epoch = epoch, candidate = %f.candidate);
                tokio::spawn(promote(ctx, name, f).instrument(span))
            }
            JobKey::Reconf(epoch) => {
                let span =
                    info_span!("failover", master = %name, epoch = epoch, candidate = %m.addr);
                tokio::spawn(reconf(ctx, name, *epoch).instrument(span))
            }
        };
        let handle = handle.abort_handle();
        self.jobs.insert(m.name.clone(), Job { key, handle });
    }

    /// One task decides every start found in this pass and proposes them in one round.
    fn start_round(&mut self) {
        if self.to_start.is_empty() {
            return;
        }
        let names = std::mem::take(&mut self.to_start);
        let span = info_span!("failover_start", masters = names.len());
        let handle = tokio::spawn(start(self.ctx.clone(), names.clone()).instrument(span));
        for name in names {
            let handle = handle.abort_handle();
            self.jobs.insert(
                name,
                Job {
                    key: JobKey::Start,
                    handle,
                },
            );
        }
    }

    /// Demotes instances that claim to be master but are not the committed one, and
    /// repoints replicas that follow another master. Only while the committed master is
    /// healthy here: never leave the set without a master.
    fn fence(&mut self, m: &MasterState, view: &MonitorView, own: &[&InstanceInfo]) {
        let now = Instant::now();
        let Some(cur) = view.get(&m.addr) else {
            return;
        };
        if !healthy(cur, now) || cur.role != Some(ReportedRole::Master) {
            return;
        }
        for &i in own {
            if i.addr == m.addr || !healthy(i, now) {
                continue;
            }
            let wrong = match i.role {
                Some(ReportedRole::Master) => Some("+convert-to-slave"),
                Some(ReportedRole::Replica) if !follows(i, &m.addr) => {
                    let since = *self.wrong_master_since.entry(i.addr.clone()).or_insert(now);
                    (now.duration_since(since) >= FIX_REPLICA_AFTER).then_some("+fix-slave-config")
                }
                _ => None,
            };
            if i.role == Some(ReportedRole::Replica) && follows(i, &m.addr) {
                self.wrong_master_since.remove(&i.addr);
            }
            let Some(event) = wrong else {
                continue;
            };
            if self.fences.contains_key(&i.addr) {
                continue;
            }
            let backing_off = self
                .ctx
                .fence_backoff
                .lock()
                .get(&i.addr)
                .is_some_and(|(_, next)| now < *next);
            if backing_off {
                continue;
            }
            let ctx = self.ctx.clone();
            let (name, addr, master_addr, epoch) = (
                m.name.clone(),
                i.addr.clone(),
                m.addr.clone(),
                m.config_epoch,
            );
            let span = info_span!("fence", master = %name, addr = %addr);
            let h = tokio::spawn(
                async move { fence_one(ctx, name, addr, master_addr, epoch, event).await }
                    .instrument(span),
            );
            self.fences.insert(i.addr.clone(), (now, h));
        }
    }
}

async fn fence_one(
    ctx: Ctx,
    name: String,
    addr: Addr,
    master: Addr,
    epoch: Epoch,
    event: &'static str,
) {
    // The decision is committed first, like every other: that proves this node still leads
    // (a deposed leader with a stale state must not demote the real master), the apply
    // refuses it if the master moved meanwhile, and every node records and publishes it.
    let kind = if event == "+convert-to-slave" {
        FenceKind::ConvertToSlave
    } else {
        FenceKind::FixSlaveConfig
    };
    let cmd = Command::Fence {
        master: name.clone(),
        epoch,
        instance: addr.clone(),
        kind,
    };
    if let Err(e) = ctx.raft.propose_with_timeout(cmd, LEADER_CHECK).await {
        debug!(error = %e, "not fencing: decision not committed");
        return;
    }
    let Some((_, m)) = ctx.master(&name) else {
        return;
    };
    if m.addr != master || m.config_epoch != epoch || m.failover.is_some() || !ctx.active() {
        return;
    }
    let result = async {
        let mut link = actions::connect(&ctx.connector, &addr, &Auth::of(&m)).await?;
        let still =
            |x: &MasterState| x.addr == master && x.config_epoch == epoch && x.failover.is_none();
        if !ctx.may_send(&name, still) {
            return Ok(());
        }
        actions::replicaof(&mut link, Some(&master)).await
    }
    .await;
    let mut backoff = ctx.fence_backoff.lock();
    match result {
        Ok(()) => {
            backoff.remove(&addr);
        }
        Err(e) => {
            // Back off (1 s, 2 s, 4 s ... 60 s): each try commits an entry and an event.
            let failures = backoff.get(&addr).map_or(0, |(n, _)| *n) + 1;
            let wait = (FENCE_RESEND * 2u32.saturating_pow(failures - 1)).min(MAX_FENCE_BACKOFF);
            backoff.insert(addr.clone(), (failures, Instant::now() + wait));
            if failures == 1 || wait == MAX_FENCE_BACKOFF {
                warn!(error = %e, failures, retry_in_s = wait.as_secs(), "could not repoint instance to the current master");
            } else {
                debug!(error = %e, failures, retry_in_s = wait.as_secs(), "could not repoint instance to the current master");
            }
        }
    }
}

/// Decides the start of every master in `names` (see [`decide_start`]) and proposes the
/// decisions together: the failovers get consecutive epochs above the committed one and go
/// out in one round, so K masters failing at once cost one commit, not K in a row.
async fn start(ctx: Ctx, names: Vec<String>) {
    let mut floor = ctx.epoch_floor.lock().await;
    let st = ctx.raft.state();
    let view = ctx.view();
    let now = Instant::now();
    // Above the committed epoch, and above the epochs of rounds still on their way to it.
    let mut epoch = st.current_epoch.max(*floor);
    let mut cmds = Vec::new();
    let mut candidates = Vec::new();
    for name in &names {
        let Some(m) = st.masters.get(name) else {
            continue;
        };
        let _span = info_span!("failover", master = %name).entered();
        match decide_start(&ctx, m, &view, now) {
            Some(Decision::Start { candidate, reason }) => {
                epoch += 1;
                info!(candidate = %candidate, epoch, reason = reason.as_str(), "+try-failover");
                candidates.push((candidate.clone(), Auth::of(m)));
                cmds.push(Command::FailoverStart {
                    master: name.clone(),
                    epoch,
                    candidate,
                    reason,
                    leader: ctx.raft.node_id(),
                    at_ms: wall_ms(),
                });
            }
            Some(Decision::Abort(why)) => cmds.push(Command::FailoverAbort {
                master: name.clone(),
                epoch: 0,
                why,
                at_ms: wall_ms(),
            }),
            None => {}
        }
    }
    // Holding the view across the commit below would make every probe's write copy it.
    drop(view);
    if cmds.is_empty() {
        return;
    }
    *floor = epoch;
    let kinds: Vec<(&'static str, String)> = cmds
        .iter()
        .map(|c| match c {
            Command::FailoverStart { master, .. } | Command::FailoverAbort { master, .. } => {
                (c.kind(), master.clone())
            }
            _ => (c.kind(), String::new()),
        })
        .collect();
    let n = cmds.len();
    let submitted = ctx.raft.submit_all(cmds, PROPOSE_TIMEOUT).await;
    drop(floor);
    // While the starts commit, open the connections their promotions will use.
    let prepare = futures::future::join_all(candidates.into_iter().map(|(addr, auth)| {
        let ctx = ctx.clone();
        async move {
            if let Ok(link) = actions::connect(&ctx.connector, &addr, &auth).await {
                let mut p = ctx.prepared.lock();
                p.retain(|_, (at, _)| at.elapsed() < PREPARED_TTL);
                p.insert(addr, (Instant::now(), link));
            }
        }
    }));
    let outcomes = async {
        match submitted {
            Ok(s) => s.outcomes().await,
            Err(e) => vec![Err(e); n],
        }
    };
    let (results, ()) = tokio::join!(outcomes, async {
        prepare.await;
    });
    for ((kind, master), r) in kinds.into_iter().zip(results) {
        match r {
            Ok(_) => {}
            Err(e @ ProposeError::Rejected(_)) => {
                debug!(command = kind, master = %master, error = %e, "refused")
            }
            Err(e) => warn!(command = kind, master = %master, error = %e, "could not commit"),
        }
    }
}

/// What a start decided for one master.
enum Decision {
    /// Fail over to this candidate.
    Start {
        candidate: Addr,
        reason: FailoverReason,
    },
    /// Commit an epoch-0 abort saying why not.
    Abort(String),
}

/// Chooses a candidate for `m`, or says why none qualifies (None: nothing to commit now).
fn decide_start(ctx: &Ctx, m: &MasterState, view: &MonitorView, now: Instant) -> Option<Decision> {
    let name = &m.name;
    if m.failover.is_some() || m.reconf.is_some() {
        return None;
    }
    let request = m.failover_request.clone();
    // Votes must still be fresh by this node's clock; the state machine checks the same at
    // the `FailoverStart`'s time.
    let odown = m.is_odown_at(wall_ms()) && !m.paused && m.budget_allows(wall_ms());
    if request.is_none() && !odown {
        return None;
    }
    let master_info = view.get(&m.addr);
    let master_down_for = master_info
        .and_then(|i| i.sdown_since)
        .map(|t| now.saturating_duration_since(t))
        .unwrap_or_default();
    let (reason, target) = match &request {
        Some(r) => (r.reason, r.target.clone()),
        None => (FailoverReason::Odown, None),
    };
    if reason == FailoverReason::Switchover {
        let master_ok =
            master_info.is_some_and(|i| healthy(i, now) && i.role == Some(ReportedRole::Master));
        if m.is_odown() || !master_ok {
            return Some(Decision::Abort(format!(
                "master-down: a switchover needs a healthy master; {} is not",
                m.addr
            )));
        }
    }
    if let Some(seen) = master_info
        .filter(|i| i.sdown_reason == Some(ObserveReason::EmptyRestart))
        .and_then(|i| i.sdown_since)
    {
        if now.saturating_duration_since(seen) < EMPTY_RESTART_INFO_WAIT
            && replica_info_older_than(m, view, seen)
        {
            debug!("waiting for replica INFO taken after the empty restart");
            return None;
        }
    }
    let params = SelectParams {
        now,
        master_down_for,
        target: target.as_ref(),
        require_synced: reason == FailoverReason::Switchover,
    };
    match select::select(m, view, &params) {
        Ok(candidate) => Some(Decision::Start { candidate, reason }),
        Err(none) => {
            if request.is_none() {
                // ODOWN without a candidate is retried every tick; commit the reason only
                // now and then, so operators see it without flooding the log.
                // The wait doubles while it lasts, so a master nobody can replace does not
                // commit an entry forever at the same pace.
                let first = Duration::from_millis(m.failover_timeout_ms.clamp(1000, 30_000));
                let mut rate = ctx.abort_rate.lock();
                let wait = match rate.get(name) {
                    Some((at, wait)) if at.elapsed() < *wait => return None,
                    Some((_, wait)) => (*wait * 2).min(MAX_ABORT_BACKOFF),
                    None => first,
                };
                rate.insert(name.clone(), (Instant::now(), wait));
            }
            warn!(reason = %none, "-failover-abort-no-good-slave");
            Some(Decision::Abort(format!("no-good-slave: {none}")))
        }
    }
}

/// Some reachable replica of `m` was last read with INFO before `since`.
fn replica_info_older_than(m: &MasterState, view: &MonitorView, since: Instant) -> bool {
    select::replicas_of(m, view)
        .iter()
        .filter_map(|a| view.get(a))
        .any(|i| i.connected && i.sdown_since.is_none() && i.info_refresh.is_none_or(|t| t < since))
}

/// Drives a committed failover to `FailoverDone` (or aborts it at `failover_timeout`).
/// Safe to run again on a new leader: it checks where Redis is before acting.
async fn promote(ctx: Ctx, name: String, f: FailoverState) {
    let mut cand: Option<Link> = ctx.take_prepared(&f.candidate);
    let mut old: Option<Link> = None;
    let mut sent: Option<Instant> = None;
    // The budget runs on this leader's own monotonic clock from when it took the job over:
    // another node's wall clock (the one in `started_at_ms`) says nothing about how long
    // this leader has had, and the time without any leader is not the candidate's fault.
    let took_over = Instant::now();
    loop {
        let Some((_, m)) = ctx.master(&name) else {
            return;
        };
        if m.failover.as_ref() != Some(&f) || !ctx.active() {
            return;
        }
        if took_over.elapsed() > Duration::from_millis(m.failover_timeout_ms) {
            // A previous leader may have promoted the candidate just before it died:
            // aborting then would strand a master that the next selection refuses
            // ("reports role master"). Ask the candidate first; if it is master, finish.
            if candidate_is_master(&ctx.connector, &f.candidate, &Auth::of(&m), &mut cand).await {
                info!("+promoted-slave (found promoted at the failover timeout)");
                let cmd = Command::FailoverDone {
                    master: name.clone(),
                    epoch: f.epoch,
                    new_addr: f.candidate.clone(),
                    at_ms: wall_ms(),
                };
                if ctx.propose(cmd).await.is_ok() {
                    return;
                }
                sleep(POLL).await;
                continue;
            }
            warn!("-failover-abort-slave-timeout");
            let cmd = Command::FailoverAbort {
                master: name.clone(),
                epoch: f.epoch,
                why: "slave-timeout: the candidate was not promoted within failover-timeout".into(),
                at_ms: wall_ms(),
            };
            let _ = ctx.propose(cmd).await;
            return;
        }
        let auth = Auth::of(&m);
        let step = match f.reason {
            FailoverReason::Switchover => {
                switchover_step(&ctx, &m, &f, &auth, &mut cand, &mut old, &mut sent).await
            }
            _ => promote_step(&ctx, &m, &f, &auth, &mut cand, &mut sent).await,
        };
        match step {
            Step::Promoted => {
                info!("+promoted-slave");
                let cmd = Command::FailoverDone {
                    master: name.clone(),
                    epoch: f.epoch,
                    new_addr: f.candidate.clone(),
                    at_ms: wall_ms(),
                };
                if ctx.propose(cmd).await.is_ok() {
                    return;
                }
                sleep(POLL).await;
            }
            Step::Wait => sleep(POLL).await,
            Step::Abort(why) => {
                warn!(why = %why, "failover aborted");
                let cmd = Command::FailoverAbort {
                    master: name.clone(),
                    epoch: f.epoch,
                    why,
                    at_ms: wall_ms(),
                };
                let _ = ctx.propose(cmd).await;
                return;
            }
        }
    }
}

/// `ROLE` of the candidate says master (false when it cannot be asked).
async fn candidate_is_master(
    connector: &Connector,
    addr: &Addr,
    auth: &Auth,
    slot: &mut Option<Link>,
) -> bool {
    let Some(link) = ensure_link(connector, slot, addr, auth).await else {
        return false;
    };
    match actions::role(link).await {
        Ok(RoleReply::Master { .. }) => true,
        Ok(_) => false,
        Err(e) => {
            debug!(error = %e, "ROLE of the candidate failed");
            *slot = None;
            false
        }
    }
}

enum Step {
    Promoted,
    Wait,
    Abort(String),
}

/// Opens `slot` if needed; returns None (after logging) when the instance is unreachable.
async fn ensure_link<'a>(
    connector: &Connector,
    slot: &'a mut Option<Link>,
    addr: &Addr,
    auth: &Auth,
) -> Option<&'a mut Link> {
    if slot.is_none() {
        match actions::connect(connector, addr, auth).await {
            Ok(l) => *slot = Some(l),
            Err(e) => {
                debug!(error = %e, "cannot reach instance");
                return None;
            }
        }
    }
    slot.as_mut()
}

/// Forced or ODOWN failover: `REPLICAOF NO ONE` on the candidate, then `ROLE` until master.
async fn promote_step(
    ctx: &Ctx,
    m: &MasterState,
    f: &FailoverState,
    auth: &Auth,
    cand: &mut Option<Link>,
    sent: &mut Option<Instant>,
) -> Step {
    let Some(link) = ensure_link(&ctx.connector, cand, &f.candidate, auth).await else {
        return Step::Wait;
    };
    match actions::role(link).await {
        Ok(RoleReply::Master { .. }) => return Step::Promoted,
        Ok(_) => {}
        Err(e) => {
            debug!(error = %e, "ROLE of the candidate failed");
            if e.is_broken() || matches!(e, crate::instance::link::LinkError::Timeout { .. }) {
                *cand = None;
            }
            return Step::Wait;
        }
    }
    let ours = |x: &MasterState| x.failover.as_ref() == Some(f);
    if sent.is_some_and(|t| t.elapsed() < PROMOTE_RESEND) || !ctx.may_send(&m.name, ours) {
        return Step::Wait;
    }
    if f.reason == FailoverReason::Forced && sent.is_none() {
        quiesce_old_master(ctx, m, f, auth, link).await;
    }
    if !ctx.may_send(&m.name, ours) {
        return Step::Wait;
    }
    info!("+failover-state-send-slaveof-noone");
    *sent = Some(Instant::now());
    // REPLICAOF NO ONE is synchronous: the ROLE sent right after it says master.
    match actions::promote(link).await {
        Ok(RoleReply::Master { .. }) => Step::Promoted,
        Ok(_) => {
            info!("+failover-state-wait-promotion");
            Step::Wait
        }
        Err(e) => {
            warn!(error = %e, "promotion failed; retrying");
            *cand = None;
            Step::Wait
        }
    }
}

/// A forced failover of a master that is still up: Sentinel promotes at once and the old
/// master keeps taking writes until it is repointed, and loses them. Here, when the old
/// master answers, its writes are paused first (bounded, and the pause ends by itself) and
/// the candidate gets a short chance to catch up; then the promotion goes ahead regardless.
/// Reconfiguration repoints the old master and kills its clients right after.
async fn quiesce_old_master(
    ctx: &Ctx,
    m: &MasterState,
    f: &FailoverState,
    auth: &Auth,
    cand: &mut Link,
) {
    let candidate = &f.candidate;
    let Ok(mut old) = actions::connect(&ctx.connector, &m.addr, auth).await else {
        return;
    };
    if !ctx.may_send(&m.name, |x| x.failover.as_ref() == Some(f)) {
        return;
    }
    let pause_ms = m.failover_timeout_ms.clamp(200, MAX_SWITCHOVER_PAUSE_MS);
    match actions::pause_and_wait(&mut old, cand, pause_ms, FORCED_CATCH_UP).await {
        Ok(true) => {
            info!(old = %m.addr, candidate = %candidate, "old master paused; candidate caught up")
        }
        Ok(false) => {
            warn!(old = %m.addr, "candidate did not catch up in time; promoting anyway (forced)")
        }
        Err(e) => debug!(error = %e, "could not pause the old master"),
    }
}

/// Planned switchover: Redis `FAILOVER TO` on the old master; done when the candidate is
/// master and the old master is not.
async fn switchover_step(
    ctx: &Ctx,
    m: &MasterState,
    f: &FailoverState,
    auth: &Auth,
    cand: &mut Option<Link>,
    old: &mut Option<Link>,
    sent: &mut Option<Instant>,
) -> Step {
    let cand_role = match ensure_link(&ctx.connector, cand, &f.candidate, auth).await {
        Some(l) => match actions::role(l).await {
            Ok(r) => Some(r),
            Err(_) => {
                *cand = None;
                None
            }
        },
        None => None,
    };
    let Some(old_link) = ensure_link(&ctx.connector, old, &m.addr, auth).await else {
        // The old master vanished mid-switchover: it is the candidate's role that counts.
        return match cand_role {
            Some(RoleReply::Master { .. }) => Step::Promoted,
            _ => Step::Wait,
        };
    };
    let old_info = match actions::replication(old_link).await {
        Ok(i) => i,
        Err(e) => {
            debug!(error = %e, "INFO of the old master failed");
            *old = None;
            return Step::Wait;
        }
    };
    let cand_master = matches!(cand_role, Some(RoleReply::Master { .. }));
    let ours = |x: &MasterState| x.failover.as_ref() == Some(f);
    if cand_master && old_info.role == ReportedRole::Replica {
        // Writers held by our pause now get -READONLY and go to the new master.
        if ctx.may_send(&m.name, ours) {
            actions::unpause(old_link).await;
        }
        return Step::Promoted;
    }
    let idle = old_info
        .failover_state
        .as_deref()
        .is_none_or(|s| s == "no-failover");
    if old_info.role == ReportedRole::Master && idle {
        if sent.is_some_and(|t| t.elapsed() > SWITCHOVER_SETTLE) {
            // Redis rolled back and the old master kept its role: nothing changed.
            if ctx.may_send(&m.name, ours) {
                actions::unpause(old_link).await;
            }
            return Step::Abort(
                "switchover-timeout: Redis FAILOVER did not complete; the master is unchanged"
                    .into(),
            );
        }
        if sent.is_some() || !ctx.may_send(&m.name, ours) {
            return Step::Wait;
        }
        let Some(cand_link) = cand.as_mut() else {
            return Step::Wait;
        };
        let pause_ms = m.failover_timeout_ms.clamp(200, MAX_SWITCHOVER_PAUSE_MS);
        info!("+failover-state-send-failover-to");
        match actions::handover(old_link, cand_link, &f.candidate, pause_ms).await {
            Ok(FailoverTo::Started) | Ok(FailoverTo::AlreadyRunning) => {
                *sent = Some(Instant::now())
            }
            Ok(FailoverTo::NotCaughtUp { master, replica }) => {
                return Step::Abort(format!(
                    "switchover-timeout: the replica reached offset {replica} of {master} within {pause_ms} ms; the master is unchanged"
                ))
            }
            Err(e) => return Step::Abort(format!("switchover-failed: {e}")),
        }
    } else if sent.is_none() && !idle {
        // A previous leader started it: wait for Redis to finish, then judge.
        *sent = Some(Instant::now());
    }
    Step::Wait
}

/// After the promotion: repoint the old master and every replica, commit progress, end.
/// Each pass is planned by [`plan_reconf`]; this loop only carries the steps out.
async fn reconf(ctx: Ctx, name: String, epoch: Epoch) {
    let mut sent_at: BTreeMap<Addr, Instant> = BTreeMap::new();
    let mut view_rx = ctx.view.clone();
    // As for the promotion: this leader's monotonic clock, from when it took over.
    let took_over = Instant::now();
    loop {
        let Some((_, m)) = ctx.master(&name) else {
            return;
        };
        let Some(r) = m.reconf.clone().filter(|r| r.epoch == epoch) else {
            return;
        };
        if !ctx.active() {
            return;
        }
        // The view is not held across the commits and sends below (every probe write
        // would copy it meanwhile).
        let steps = {
            let view = view_rx.borrow_and_update().clone();
            plan_reconf(&Pass {
                master: &m,
                reconf: &r,
                view: &view,
                now: Instant::now(),
                new_master_odown: m.is_odown_at(wall_ms()),
                timed_out: took_over.elapsed() > Duration::from_millis(m.failover_timeout_ms),
                sent_at: &sent_at,
            })
        };
        if run_reconf_steps(&ctx, &name, epoch, &m, steps, &mut sent_at).await {
            return;
        }
        tokio::select! {
            _ = view_rx.changed() => {}
            _ = sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Carries out one pass of [`reconf`]; true once the reconfiguration is ended.
async fn run_reconf_steps(
    ctx: &Ctx,
    name: &str,
    epoch: Epoch,
    m: &MasterState,
    steps: Vec<ReconfStep>,
    sent_at: &mut BTreeMap<Addr, Instant>,
) -> bool {
    let auth = Auth::of(m);
    let commit = |replica: &Addr, stage| Command::Reconf {
        master: name.to_string(),
        epoch,
        replica: replica.clone(),
        stage,
    };
    let mut slots = Slots::default();
    for step in steps {
        match step {
            ReconfStep::Commit { replica, stage } => {
                let _ = ctx.propose(commit(&replica, stage)).await;
            }
            ReconfStep::Repoint {
                replica,
                is_old,
                mark,
            } => {
                if !slots.admits(mark) {
                    continue;
                }
                if mark != Mark::None {
                    let ok = ctx
                        .propose(commit(&replica, ReconfStage::Sent))
                        .await
                        .is_ok();
                    slots.committed(mark, ok);
                    if !ok {
                        continue;
                    }
                }
                sent_at.insert(replica.clone(), Instant::now());
                send_replicaof(ctx, name, epoch, &replica, &m.addr, &auth, is_old).await;
            }
            ReconfStep::End(why) => {
                match why {
                    EndReason::NewMasterDown => {
                        warn!("new master is objectively down; ending reconfiguration")
                    }
                    EndReason::AllDone => info!("+failover-end"),
                    EndReason::TimedOut => warn!("+failover-end-for-timeout"),
                }
                let end = Command::FailoverEnd {
                    master: name.to_string(),
                    epoch,
                    timed_out: why.timed_out(),
                    at_ms: wall_ms(),
                };
                let _ = ctx.propose(end).await;
                return true;
            }
        }
    }
    false
}

async fn send_replicaof(
    ctx: &Ctx,
    name: &str,
    epoch: Epoch,
    t: &Addr,
    master: &Addr,
    auth: &Auth,
    is_old: bool,
) {
    // The reconfiguration of this epoch towards this master is still the committed one.
    let still =
        |m: &MasterState| m.addr == *master && m.reconf.as_ref().is_some_and(|r| r.epoch == epoch);
    if !ctx.may_send(name, still) {
        return;
    }
    let result = async {
        let mut link = actions::connect(&ctx.connector, t, auth).await?;
        if !ctx.may_send(name, still) {
            return Ok(false);
        }
        actions::replicaof(&mut link, Some(master)).await?;
        if is_old && ctx.may_send(name, still) {
            // A forced failover may have paused its writes; it is a replica now.
            actions::unpause(&mut link).await;
        }
        Ok::<bool, crate::instance::link::LinkError>(true)
    }
    .await;
    match result {
        Ok(false) => {}
        Ok(true) if is_old => info!(addr = %t, "+convert-to-slave"),
        Ok(true) => info!(addr = %t, "+slave-reconf-sent"),
        Err(e) => warn!(addr = %t, error = %e, "could not repoint replica"),
    }
}
