//! The hold on full syncs from a master that restarted empty: a resync from it would wipe the
//! data only its replicas still hold, so the node that sees the empty restart parks their sync
//! requests (a long `repl-diskless-sync-delay`) and pauses its writes until a failover repoints
//! them. The instance's probe ([`super::probe`]) says when; this module holds the hold's state,
//! its Redis commands, and its decisions as pure functions.
//!
//! The node that set the hold may be gone (stopped, crashed, or its master removed), and the
//! instance's own `repl-diskless-sync*` settings are committed (`ClusterState::sync_holds`), so
//! the leader puts them back once the hold has no more purpose ([`restore_ended_holds`]).

use std::time::Duration;

use redis::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::health::Timings;
use crate::clock::wall_ms;
use crate::consensus::RaftHandle;
use crate::fsm::{ClusterState, Command, MasterState, SyncHoldRecord};
use crate::instance::info::{parse_keyspace_keys, value_text};
use crate::instance::link::{server_error_line, Auth, Connector, Link};
use crate::model::Addr;
use crate::view::{MonitorView, ReportedRole};

/// `repl-diskless-sync-delay` while full syncs from a master that restarted empty are held
/// back: far longer than a failover takes, bounded so a hold nobody releases ends by itself.
/// An odd value, so that other nodes recognise the hold and do not take it for a setting.
const HOLD_DELAY_SECS: u64 = 117;
/// Redis's default `repl-diskless-sync-delay`, restored on a hold whose owner is gone.
const DEFAULT_DISKLESS_DELAY: &str = "5";
/// How long a majority may take to confirm this node before it holds syncs.
const HOLD_QUORUM_TIMEOUT: Duration = Duration::from_millis(150);
/// How long the node that set a hold has to release it before others reset it.
const ORPHAN_HOLD_GRACE: Duration = Duration::from_secs(3);
/// One `CLIENT PAUSE WRITE` of a master that restarted empty; renewed while the hold lasts, so
/// it ends by itself if this node goes away.
const PAUSE_MS: u64 = 2_000;
/// How long a replica may take to tell how many keys it holds after its master restarted.
const REPLICA_ASK_TIMEOUT: Duration = Duration::from_millis(300);
/// Connect, and each command, to a held instance (the leader's restore).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a majority may take to confirm the leader before it restores anything.
const RESTORE_QUORUM_TIMEOUT: Duration = Duration::from_millis(500);

/// The instance a probe watches, as the hold needs it.
#[derive(Clone, Copy)]
pub(super) struct HeldInstance<'a> {
    pub(super) raft: &'a RaftHandle,
    pub(super) addr: &'a Addr,
}

/// One probe's part in holds on its instance.
#[derive(Default)]
pub(super) struct HoldState {
    /// Full syncs from this instance are held back (see [`HoldState::hold_syncs`]).
    hold: Option<SyncHold>,
    /// When to look for a hold another node left on this instance (now a replica).
    orphan_check_at: Option<Instant>,
}

/// A hold on a master's full syncs (and, for a while, on its writes).
struct SyncHold {
    /// `repl-diskless-sync` and `repl-diskless-sync-delay` to restore, or `None` when another
    /// node set the hold first (it restores them).
    original: Option<(String, String)>,
    since: Instant,
    /// Writes are paused (`CLIENT PAUSE WRITE`) until then, unless renewed.
    paused_until: Option<Instant>,
}

impl SyncHold {
    fn foreign() -> SyncHold {
        SyncHold {
            original: None,
            since: Instant::now(),
            paused_until: None,
        }
    }
}

impl HoldState {
    /// A hold is on (set by this node, or seen set by another).
    pub(super) fn is_held(&self) -> bool {
        self.hold.is_some()
    }

    /// The instance reports a new role at `now`: once a replica, a hold another node left on it
    /// is looked for after a grace.
    pub(super) fn on_role_change(&mut self, role: ReportedRole, now: Instant) {
        self.orphan_check_at = (role == ReportedRole::Replica).then(|| now + ORPHAN_HOLD_GRACE);
    }

    /// Keeps the replicas of a master that restarted empty from resyncing from it, which
    /// would wipe the data only they still hold, until the failover repoints them. Redis starts
    /// a diskless full sync only after `repl-diskless-sync-delay`, so a long delay parks the
    /// replicas' sync requests; a replica repointed or promoted meanwhile keeps its data.
    /// Only with a confirmed majority: a minority never acts on Redis.
    ///
    /// Within this node's lease the hold is set at once; only once the lease has lapsed does
    /// the node first confirm a majority with a ReadIndex round. The replicas of a master that
    /// took long to load queue their sync requests in its listen backlog and are served within
    /// milliseconds of it being ready (at once with a diskless delay of 0 or disk-based sync),
    /// so a round trip to a majority first (tens to hundreds of ms under load) lets them be
    /// wiped. The lease is the same standard every other action on Redis meets: it holds only
    /// while a quorum confirmed this node's leader less than `lease` ago, which is shorter than
    /// the time that quorum refuses to elect anyone else. A node cut off in a minority loses it
    /// (and so stops acting) before a majority can elect a successor, exactly as a leader's
    /// failover commands stop, and is checked again right before each command. A completed
    /// ReadIndex round gives no more: it too only proves a majority confirmed the leader at
    /// its start, and the commands follow it later.
    pub(super) async fn hold_syncs(
        &mut self,
        at: HeldInstance<'_>,
        link: Option<&mut Link>,
        m: &MasterState,
        t: &Timings,
    ) {
        let Some(confirmed) = confirm_majority(at.raft).await else {
            return;
        };
        let Some(link) = link else {
            return;
        };
        let current = match config_get_sync(link, t.info_timeout).await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "cannot read the sync settings of the empty master; its replicas may resync from it");
                // Do not retry every round against an ACL that refuses CONFIG.
                self.hold = Some(SyncHold::foreign());
                return;
            }
        };
        if is_hold_delay(&current.1) {
            debug!("full syncs already held by another node");
            self.hold = Some(SyncHold::foreign());
            return;
        }
        let hold = HOLD_DELAY_SECS.to_string();
        if !confirmed.holds(at.raft) {
            debug!("not holding full syncs: the majority confirmation lapsed");
            return;
        }
        // Set at once: the replicas reconnect and ask for a full sync within about a second,
        // and a commit under load may take a good part of that.
        if let Err(e) = config_set_sync(link, ("yes", &hold), false, t.info_timeout).await {
            warn!(error = %e, "cannot hold full syncs from the empty master; its replicas may resync from it");
            self.hold = Some(SyncHold::foreign());
            return;
        }
        info!(
            confirmed_by = confirmed.how(),
            "held full syncs from the empty master"
        );
        // Writes it took now would be lost when it is demoted: clients wait instead.
        let paused_until = if confirmed.holds(at.raft) {
            pause_writes(link, t.info_timeout).await
        } else {
            None
        };
        // Then the instance's own settings are committed, so that any node can put them back
        // if this one goes away. The first record's node owns the hold. Without a record (a
        // member cannot read it yet, or no commit) this node alone restores them.
        let mut current = current;
        if at.raft.state().cluster_version() >= 4 {
            let cmd = Command::SyncHold {
                master: m.name.clone(),
                instance: at.addr.clone(),
                node: at.raft.node_id(),
                original: Some(current.clone()),
                at_ms: wall_ms(),
            };
            match at.raft.propose(cmd).await {
                Ok(_) => match at.raft.state().sync_holds.get(at.addr) {
                    Some(r) if r.owner == at.raft.node_id() => {
                        current = (r.diskless_sync.clone(), r.diskless_sync_delay.clone());
                    }
                    _ => {
                        debug!("full syncs held by another node");
                        self.hold = Some(SyncHold::foreign());
                        return;
                    }
                },
                Err(e) => {
                    warn!(error = %e, "cannot record the sync settings of the empty master; only this node can restore them");
                }
            }
        }
        warn!(
            diskless_sync = %current.0,
            diskless_sync_delay = %current.1,
            hold_secs = HOLD_DELAY_SECS,
            "holding full syncs from the empty master until a replica takes over"
        );
        self.hold = Some(SyncHold {
            original: Some(current),
            since: Instant::now(),
            paused_until,
        });
    }

    /// Ends this node's hold once the instance is a replica (`demoted`: the failover moved past
    /// it) or the empty-restart failure was given up (`given_up`); resets a hold whose owner
    /// did not.
    pub(super) async fn maintain(
        &mut self,
        at: HeldInstance<'_>,
        link: &mut Link,
        m: &MasterState,
        t: &Timings,
        demoted: bool,
        given_up: bool,
    ) {
        let due = orphan_check_due(self.orphan_check_at, Instant::now());
        match next_step(self.hold.is_some(), demoted, given_up, due) {
            Step::Release => {
                let Some(hold) = self.hold.take() else {
                    return;
                };
                let mine = hold.original.is_some();
                self.hold = release_hold(link, hold, t).await;
                if mine && self.hold.is_none() {
                    clear_hold_record(at, m).await;
                }
            }
            Step::Renew => {
                if let Some(hold) = self.hold.as_mut() {
                    renew_pause(link, hold, m, t, at.raft.has_leader_contact()).await;
                }
            }
            Step::CheckOrphan => {
                // A committed hold is the leader's to end, with the instance's own settings.
                let recorded = at.raft.state().sync_holds.contains_key(at.addr);
                if !recorded {
                    self.orphan_check_at = None;
                    reset_orphan_hold(link, t).await;
                }
            }
            Step::Wait => {}
        }
    }
}

/// How this node knows a majority stands behind it before it holds syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Confirmed {
    /// Its lease (see [`RaftHandle::has_leader_contact`]), checked again before each command.
    Lease,
    /// A ReadIndex round started at this instant; it vouches for as long as a lease round
    /// would.
    Read(Instant),
}

impl Confirmed {
    /// Still confirmed now: the lease holds, or the round is younger than the lease.
    fn holds(self, raft: &RaftHandle) -> bool {
        confirmation_holds(
            self,
            raft.has_leader_contact(),
            raft.lease(),
            Instant::now(),
        )
    }

    fn how(self) -> &'static str {
        match self {
            Confirmed::Lease => "lease",
            Confirmed::Read(_) => "majority read",
        }
    }
}

fn confirmation_holds(c: Confirmed, lease_holds: bool, lease: Duration, now: Instant) -> bool {
    lease_holds
        || match c {
            Confirmed::Lease => false,
            Confirmed::Read(started) => now.saturating_duration_since(started) < lease,
        }
}

/// The lease if it holds; otherwise a ReadIndex round (bounded by [`HOLD_QUORUM_TIMEOUT`]).
/// `None`: no majority confirmed this node.
async fn confirm_majority(raft: &RaftHandle) -> Option<Confirmed> {
    if raft.has_leader_contact() {
        return Some(Confirmed::Lease);
    }
    let started = Instant::now();
    match raft.read_index(HOLD_QUORUM_TIMEOUT).await {
        Ok(_) => Some(Confirmed::Read(started)),
        Err(e) => {
            debug!(error = %e, "not holding full syncs: no majority confirmed");
            None
        }
    }
}

/// What a probe round does about the hold.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// End the hold: its purpose is over.
    Release,
    /// The hold goes on: keep the writes paused while it should.
    Renew,
    /// No hold of ours on a replica: look for one another node left, unless committed.
    CheckOrphan,
    Wait,
}

/// `held`: this node has a hold on; `orphan_due`: the grace after the instance became a
/// replica is over.
fn next_step(held: bool, demoted: bool, given_up: bool, orphan_due: bool) -> Step {
    if held {
        if demoted || given_up {
            Step::Release
        } else {
            Step::Renew
        }
    } else if orphan_due && demoted {
        Step::CheckOrphan
    } else {
        Step::Wait
    }
}

fn orphan_check_due(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|at| now >= at)
}

/// The delay is the hold's own, not a setting.
fn is_hold_delay(delay: &str) -> bool {
    delay == HOLD_DELAY_SECS.to_string()
}

/// The hold this node set ended and its settings are back: the record goes.
async fn clear_hold_record(at: HeldInstance<'_>, m: &MasterState) {
    if !at.raft.state().sync_holds.contains_key(at.addr) {
        return;
    }
    let cmd = Command::SyncHold {
        master: m.name.clone(),
        instance: at.addr.clone(),
        node: at.raft.node_id(),
        original: None,
        at_ms: wall_ms(),
    };
    if let Err(e) = at.raft.propose(cmd).await {
        // The leader clears it when it sees the hold gone.
        debug!(error = %e, "cannot clear the sync hold record");
    }
}

/// The replicas to ask for their keys after `m` restarted: the committed ones, and any other
/// instance of `m` in the view but the master at `own`.
pub(super) fn replicas_to_ask(m: &MasterState, view: &MonitorView, own: &Addr) -> Vec<Addr> {
    let mut replicas: Vec<Addr> = m.replicas.iter().cloned().collect();
    for i in view.instances.values() {
        if i.master == m.name && i.addr != *own && !replicas.contains(&i.addr) {
            replicas.push(i.addr.clone());
        }
    }
    replicas
}

/// The master restarted with `master_keys` keys and we saw no data on it before (our last
/// INFO may predate the last writes): asks its replicas directly whether any holds data it
/// lost (then a resync from this master would wipe them).
pub(super) async fn replicas_hold_data(
    connector: &Connector,
    replicas: Vec<Addr>,
    auth: &Auth,
    master_keys: i64,
    t: &Timings,
) -> bool {
    // All at once, each bounded: the replicas reconnect and ask for a full sync within
    // about a second, and dead addresses must not push the answer past that.
    let limit = replica_ask_limit(t.connect_timeout, t.info_timeout);
    let asks = replicas.into_iter().map(|r| {
        let auth = auth.clone();
        async move {
            let keys = tokio::time::timeout(limit, async {
                let mut link = connector.connect(&r, &auth, limit).await?;
                let mut c = redis::cmd("INFO");
                c.arg("keyspace");
                link.text(&c, "INFO keyspace", limit).await
            })
            .await;
            (r, keys)
        }
    });
    for (r, keys) in futures::future::join_all(asks).await {
        match keys {
            Ok(Ok(text)) => match parse_keyspace_keys(&text) {
                Ok(n) if lost_keys(master_keys, Some(n)) => {
                    debug!(replica = %r, keys = n, "a replica holds data the restarted master lost");
                    return true;
                }
                Ok(_) => {}
                Err(e) => debug!(replica = %r, error = %e, "bad INFO keyspace from replica"),
            },
            Ok(Err(e)) => debug!(replica = %r, error = %e, "cannot ask replica for its keys"),
            Err(_) => debug!(replica = %r, "no answer from replica about its keys in time"),
        }
    }
    false
}

/// How long asking one replica for its keys may take, connect included.
fn replica_ask_limit(connect_timeout: Duration, info_timeout: Duration) -> Duration {
    REPLICA_ASK_TIMEOUT
        .min(connect_timeout + info_timeout)
        .max(Duration::from_millis(50))
}

/// A master that restarted holding `now` keys lost data, given `before` keys (its own before
/// the restart, or a replica's): it came back empty, or with less than half of them (a
/// restart that loaded its persistence files has about as many).
pub(super) fn lost_keys(now: i64, before: Option<i64>) -> bool {
    before.is_some_and(|b| b > 0 && now.saturating_mul(2) < b)
}

/// Ends a hold: unpauses writes (a demoted master's paused writers now get `-READONLY`; one
/// given up serves again) and restores and persists its sync settings, since its demotion may
/// have run CONFIG REWRITE while the hold was on. Returns the hold if it must be tried again.
async fn release_hold(link: &mut Link, mut hold: SyncHold, t: &Timings) -> Option<SyncHold> {
    // Another node set it and releases it.
    let (diskless, delay) = hold.original.clone()?;
    if hold.paused_until.take().is_some() {
        unpause_writes(link, t.info_timeout).await;
    }
    match config_set_sync(link, (&diskless, &delay), true, t.info_timeout).await {
        Ok(()) => {
            info!(
                diskless_sync = %diskless,
                diskless_sync_delay = %delay,
                held_ms = hold.since.elapsed().as_millis() as u64,
                "released the hold on full syncs"
            );
            None
        }
        Err(e) => {
            warn!(error = %e, "cannot release the hold on full syncs yet");
            Some(hold)
        }
    }
}

/// What to do about the empty master's paused writes.
#[derive(Debug, PartialEq, Eq)]
enum Pause {
    Keep,
    /// The pause ends soon: pause again.
    Renew,
    /// Paused long enough (see [`pause_limit`]): let it take writes.
    End,
}

/// The hold began at `since`, writes are paused until `until`; `limit` from [`pause_limit`].
/// `lease`: this node holds its lease now. Pausing again acts on Redis, so without the lease
/// (a node cut off in a minority) the pause is left to run out; ending it only gives the
/// instance back what it had.
fn pause_step(since: Instant, until: Instant, now: Instant, limit: Duration, lease: bool) -> Pause {
    if now.duration_since(since) > limit {
        Pause::End
    } else if lease && until.saturating_duration_since(now) < Duration::from_millis(PAUSE_MS / 2) {
        Pause::Renew
    } else {
        Pause::Keep
    }
}

/// Keeps the empty master's writes paused while a failover can still come, then lets it
/// take writes again (the sync hold itself stays until the failure is given up).
async fn renew_pause(
    link: &mut Link,
    hold: &mut SyncHold,
    m: &MasterState,
    t: &Timings,
    lease: bool,
) {
    let Some(until) = hold.paused_until else {
        return;
    };
    let now = Instant::now();
    match pause_step(hold.since, until, now, pause_limit(m.down_after_ms), lease) {
        Pause::End => {
            warn!("no replica took over the empty master yet; letting it take writes again");
            unpause_writes(link, t.info_timeout).await;
            hold.paused_until = None;
        }
        Pause::Renew => {
            hold.paused_until = pause_writes(link, t.info_timeout).await.or(Some(until));
        }
        Pause::Keep => {}
    }
}

/// A node that held syncs and died before releasing them: back to Redis's default delay.
async fn reset_orphan_hold(link: &mut Link, t: &Timings) {
    let Ok((diskless, delay)) = config_get_sync(link, t.info_timeout).await else {
        return;
    };
    if !is_hold_delay(&delay) {
        return;
    }
    match config_set_sync(
        link,
        (&diskless, DEFAULT_DISKLESS_DELAY),
        true,
        t.info_timeout,
    )
    .await
    {
        Ok(()) => info!("reset a hold on full syncs left by another node"),
        Err(e) => warn!(error = %e, "cannot reset a hold on full syncs"),
    }
}

/// How long a master that restarted empty has its writes paused at most (given its
/// `down_after_ms`): a failover normally replaces it in well under a second once every node
/// has seen the restart.
fn pause_limit(down_after_ms: u64) -> Duration {
    Duration::from_millis(down_after_ms.saturating_mul(2)).max(Duration::from_secs(5))
}

/// `CLIENT PAUSE <PAUSE_MS> WRITE`; the time it lasts until, or `None` if refused.
async fn pause_writes(link: &mut Link, timeout: Duration) -> Option<Instant> {
    let mut c = redis::cmd("CLIENT");
    c.arg("PAUSE").arg(PAUSE_MS).arg("WRITE");
    let sent = Instant::now();
    match link.query(&c, "CLIENT PAUSE", timeout).await {
        Ok(_) => Some(sent + Duration::from_millis(PAUSE_MS)),
        Err(e) => {
            warn!(error = %e, "cannot pause writes on the empty master");
            None
        }
    }
}

async fn unpause_writes(link: &mut Link, timeout: Duration) {
    if let Err(e) = link
        .query(
            redis::cmd("CLIENT").arg("UNPAUSE"),
            "CLIENT UNPAUSE",
            timeout,
        )
        .await
    {
        warn!(error = %e, "cannot unpause writes; the pause ends by itself");
    }
}

/// `repl-diskless-sync` and `repl-diskless-sync-delay` of an instance.
pub(super) async fn config_get_sync(
    link: &mut Link,
    timeout: Duration,
) -> Result<(String, String), String> {
    let mut p = redis::pipe();
    p.cmd("CONFIG")
        .arg("GET")
        .arg("repl-diskless-sync")
        .cmd("CONFIG")
        .arg("GET")
        .arg("repl-diskless-sync-delay");
    let r = link
        .pipeline(&p, 2, "CONFIG GET", timeout)
        .await
        .map_err(|e| e.to_string())?;
    let value = |v: &Value| -> Result<String, String> {
        match v {
            Value::ServerError(e) => Err(format!("CONFIG GET failed: {}", server_error_line(e))),
            Value::Array(kv) if kv.len() == 2 => {
                value_text(&kv[1]).ok_or_else(|| "CONFIG GET: not a string".to_string())
            }
            Value::Map(kv) if kv.len() == 1 => {
                value_text(&kv[0].1).ok_or_else(|| "CONFIG GET: not a string".to_string())
            }
            other => Err(format!(
                "CONFIG GET returned {}",
                crate::instance::link::short(other)
            )),
        }
    };
    Ok((value(&r[0])?, value(&r[1])?))
}

/// Sets `repl-diskless-sync-delay` then `repl-diskless-sync` (one pipeline: Redis applies both
/// before its replication cron can run in between), then `CONFIG REWRITE` if `persist` (its
/// failure, for example no config file, is ignored).
pub(super) async fn config_set_sync(
    link: &mut Link,
    (diskless, delay): (&str, &str),
    persist: bool,
    timeout: Duration,
) -> Result<(), String> {
    let mut p = redis::pipe();
    p.cmd("CONFIG")
        .arg("SET")
        .arg("repl-diskless-sync-delay")
        .arg(delay)
        .cmd("CONFIG")
        .arg("SET")
        .arg("repl-diskless-sync")
        .arg(diskless);
    if persist {
        p.cmd("CONFIG").arg("REWRITE");
    }
    let count = if persist { 3 } else { 2 };
    let r = link
        .pipeline(&p, count, "CONFIG SET", timeout)
        .await
        .map_err(|e| e.to_string())?;
    for v in &r[..2] {
        if let Value::ServerError(e) = v {
            return Err(format!("CONFIG SET failed: {}", server_error_line(e)));
        }
    }
    Ok(())
}

/// Why a recorded hold is over, or `None` while it may still protect the replicas' data.
/// `is_replica`: the instance reports itself a replica now.
fn hold_over(
    state: &ClusterState,
    addr: &Addr,
    rec: &SyncHoldRecord,
    is_replica: bool,
    now_ms: u64,
) -> Option<&'static str> {
    let Some(m) = state.masters.get(&rec.master) else {
        return Some("master removed");
    };
    if is_replica {
        // Demoted: it syncs from the new master now; nobody syncs from it.
        return Some("demoted");
    }
    if m.addr != *addr {
        // Moved away but not demoted yet: its replicas may still ask it for a sync.
        return None;
    }
    // The empty-restart failure is given up one failover timeout after it was seen (the
    // owner releases it then); a grace later, the hold is surely orphaned.
    let limit = m
        .failover_timeout_ms
        .saturating_add(ORPHAN_HOLD_GRACE.as_millis() as u64);
    (m.failover.is_none() && now_ms.saturating_sub(rec.since_ms) > limit).then_some("given up")
}

/// One pass on the leader over every recorded hold.
pub(super) async fn restore_ended_holds(raft: RaftHandle, connector: Connector) {
    let state = raft.state();
    for (addr, rec) in &state.sync_holds {
        let auth = Auth {
            user: state
                .masters
                .get(&rec.master)
                .map_or(rec.auth_user.clone(), |m| m.auth_user.clone()),
            pass: state
                .masters
                .get(&rec.master)
                .map_or(rec.auth_pass.clone(), |m| m.auth_pass.clone()),
            tls: rec.tls,
        };
        let mut link = match connector.connect(addr, &auth, RESTORE_TIMEOUT).await {
            Ok(l) => l,
            Err(e) => {
                debug!(instance = %addr, error = %e, "cannot reach a held instance yet");
                continue;
            }
        };
        let mut c = redis::cmd("INFO");
        c.arg("replication");
        let Ok(text) = link.text(&c, "INFO replication", RESTORE_TIMEOUT).await else {
            continue;
        };
        let is_replica = text.lines().any(|l| l.trim() == "role:slave");
        let Some(why) = hold_over(&state, addr, rec, is_replica, wall_ms()) else {
            continue;
        };
        if let Err(e) = raft.read_index(RESTORE_QUORUM_TIMEOUT).await {
            debug!(error = %e, "not ending a hold: no majority confirmed");
            return;
        }
        let current = match config_get_sync(&mut link, RESTORE_TIMEOUT).await {
            Ok(v) => v,
            Err(e) => {
                warn!(instance = %addr, error = %e, "cannot read the sync settings of a held instance");
                continue;
            }
        };
        // Only the hold's own delay is replaced: any other value is the operator's (or the
        // owner restored it already).
        if is_hold_delay(&current.1) {
            let original = (rec.diskless_sync.as_str(), rec.diskless_sync_delay.as_str());
            if let Err(e) = config_set_sync(&mut link, original, true, RESTORE_TIMEOUT).await {
                warn!(instance = %addr, error = %e, "cannot restore the sync settings of a held instance");
                continue;
            }
            info!(
                instance = %addr,
                why,
                diskless_sync = %rec.diskless_sync,
                diskless_sync_delay = %rec.diskless_sync_delay,
                "restored the sync settings of an instance whose hold ended"
            );
        }
        let cmd = Command::SyncHold {
            master: rec.master.clone(),
            instance: addr.clone(),
            node: raft.node_id(),
            original: None,
            at_ms: wall_ms(),
        };
        if let Err(e) = raft.propose(cmd).await {
            debug!(error = %e, "cannot clear a sync hold record yet");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::MasterSpec;

    #[test]
    fn a_hold_ends_when_removed_demoted_or_given_up_and_not_before() {
        let a: Addr = "127.0.0.1:6379".parse().unwrap();
        let b: Addr = "127.0.0.1:6380".parse().unwrap();
        let mut st = ClusterState::default();
        st.apply(
            1,
            &Command::Monitor {
                spec: MasterSpec {
                    failover_timeout_ms: 10_000,
                    ..MasterSpec::new("m", a.clone(), 2)
                },
            },
        );
        let rec = SyncHoldRecord {
            master: "m".into(),
            owner: 1,
            diskless_sync: "no".into(),
            diskless_sync_delay: "3".into(),
            since_ms: 1_000,
            auth_user: None,
            auth_pass: None,
            tls: false,
        };
        let record = |delay: Option<&str>| Command::SyncHold {
            master: "m".into(),
            instance: a.clone(),
            node: 1,
            original: delay.map(|d| ("no".to_string(), d.to_string())),
            at_ms: 1_000,
        };
        assert_eq!(record(None).format_version(), 4);
        st.apply(2, &record(Some("3")));
        // The first record wins: a later one may have read the hold's own delay.
        st.apply(3, &record(Some("117")));
        assert_eq!(st.sync_holds.get(&a), Some(&rec));
        st.apply(4, &record(None));
        assert!(st.sync_holds.is_empty());
        assert_eq!(hold_over(&st, &a, &rec, false, 5_000), None);
        assert_eq!(hold_over(&st, &a, &rec, true, 5_000), Some("demoted"));
        assert_eq!(hold_over(&st, &a, &rec, false, 15_000), Some("given up"));
        // Moved away, still a master: its replicas may still sync from it.
        assert_eq!(hold_over(&st, &b, &rec, false, 99_000), None);
        st.apply(5, &Command::Remove { name: "m".into() });
        assert_eq!(hold_over(&st, &a, &rec, false, 0), Some("master removed"));
    }

    #[test]
    fn a_restart_lost_data_when_the_keys_did_not_come_back() {
        // Empty, or a handful written by clients since it came back.
        assert!(lost_keys(0, Some(1)));
        assert!(lost_keys(16, Some(7_000)));
        // It loaded its persistence files (maybe missing the last second of writes).
        assert!(!lost_keys(6_990, Some(7_000)));
        // Nothing to lose, or nothing known.
        assert!(!lost_keys(0, Some(0)));
        assert!(!lost_keys(0, None));
    }

    #[test]
    fn a_hold_is_released_when_demoted_or_given_up_and_renewed_until_then() {
        use Step::*;
        // (held, demoted, given_up, orphan_due) -> step
        let table = [
            ((true, false, false, false), Renew),
            ((true, false, false, true), Renew),
            ((true, true, false, false), Release),
            ((true, false, true, false), Release),
            ((true, true, true, true), Release),
            // No hold of ours: another node's is looked for on a replica, after the grace.
            ((false, true, false, true), CheckOrphan),
            ((false, true, true, true), CheckOrphan),
            ((false, true, false, false), Wait),
            ((false, false, false, true), Wait),
            ((false, false, true, true), Wait),
        ];
        for ((held, demoted, given_up, due), want) in table {
            assert_eq!(
                next_step(held, demoted, given_up, due),
                want,
                "held {held} demoted {demoted} given_up {given_up} due {due}"
            );
        }
    }

    #[test]
    fn the_orphan_check_is_due_at_its_time_and_not_before() {
        let t0 = Instant::now();
        assert!(!orphan_check_due(None, t0));
        assert!(!orphan_check_due(
            Some(t0 + ORPHAN_HOLD_GRACE),
            t0 + Duration::from_millis(2_999)
        ));
        assert!(orphan_check_due(
            Some(t0 + ORPHAN_HOLD_GRACE),
            t0 + ORPHAN_HOLD_GRACE
        ));
        assert!(orphan_check_due(Some(t0), t0 + Duration::from_secs(60)));
    }

    #[test]
    fn a_hold_acts_only_within_the_lease_or_a_read_younger_than_it() {
        let t0 = Instant::now();
        let lease = Duration::from_millis(800);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // The lease decides while it holds, whatever confirmed the hold first.
        assert!(confirmation_holds(Confirmed::Lease, true, lease, ms(5_000)));
        assert!(confirmation_holds(
            Confirmed::Read(t0),
            true,
            lease,
            ms(5_000)
        ));
        // Lapsed: a lease confirmation is gone; a read vouches until a lease after its start.
        assert!(!confirmation_holds(Confirmed::Lease, false, lease, t0));
        assert!(confirmation_holds(
            Confirmed::Read(t0),
            false,
            lease,
            ms(799)
        ));
        assert!(!confirmation_holds(
            Confirmed::Read(t0),
            false,
            lease,
            ms(800)
        ));
    }

    #[test]
    fn only_the_holds_own_delay_is_taken_for_a_hold() {
        assert!(is_hold_delay("117"));
        assert!(!is_hold_delay("5"));
        assert!(!is_hold_delay("0"));
        assert!(!is_hold_delay("1170"));
        assert!(!is_hold_delay(" 117"));
    }

    #[test]
    fn writes_stay_paused_at_least_five_seconds_or_two_down_afters() {
        assert_eq!(pause_limit(1_000), Duration::from_secs(5));
        assert_eq!(pause_limit(2_500), Duration::from_secs(5));
        assert_eq!(pause_limit(30_000), Duration::from_secs(60));
        assert_eq!(pause_limit(u64::MAX), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn the_pause_is_renewed_in_its_second_half_within_the_lease_and_ends_after_the_limit() {
        let since = Instant::now();
        let limit = Duration::from_secs(5);
        let ms = |n: u64| since + Duration::from_millis(n);
        // Just paused for PAUSE_MS: kept until less than half of it is left.
        let until = ms(PAUSE_MS);
        assert_eq!(pause_step(since, until, since, limit, true), Pause::Keep);
        assert_eq!(
            pause_step(since, until, ms(1_000), limit, true),
            Pause::Keep
        );
        assert_eq!(
            pause_step(since, until, ms(1_001), limit, true),
            Pause::Renew
        );
        // Past its end (a round came late): renewed all the same.
        assert_eq!(
            pause_step(since, until, ms(2_500), limit, true),
            Pause::Renew
        );
        // The limit: at it still paused, after it writes go on.
        assert_eq!(
            pause_step(since, ms(6_000), ms(5_000), limit, true),
            Pause::Keep
        );
        assert_eq!(
            pause_step(since, ms(6_000), ms(5_001), limit, true),
            Pause::End
        );
        assert_eq!(
            pause_step(since, ms(5_500), ms(5_001), limit, true),
            Pause::End
        );
        // Without the lease this node no longer acts on Redis: the pause runs out by itself,
        // but the end (writes back) is not held up.
        assert_eq!(
            pause_step(since, until, ms(1_001), limit, false),
            Pause::Keep
        );
        assert_eq!(
            pause_step(since, until, ms(2_500), limit, false),
            Pause::Keep
        );
        assert_eq!(
            pause_step(since, ms(6_000), ms(5_001), limit, false),
            Pause::End
        );
    }

    #[test]
    fn a_replica_is_asked_at_most_300_ms_and_at_least_50() {
        let ms = Duration::from_millis;
        assert_eq!(replica_ask_limit(ms(1_000), ms(1_000)), ms(300));
        assert_eq!(replica_ask_limit(ms(100), ms(100)), ms(200));
        assert_eq!(replica_ask_limit(ms(10), ms(10)), ms(50));
    }
}
