//! One long-lived task per Redis instance: PING on a short period, `INFO replication`,
//! `INFO server`, `ROLE` and `INFO keyspace` on a longer one, subjective down, and (for the
//! instance that is currently a master) `Observe` proposals on transitions.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info, warn};

use super::errlog::{self, ErrorLog, Summary};
use super::health::{self, Periods, Timings};
use super::tilt::Tilt;
use crate::clock::wall_ms;
use crate::consensus::{ProposeError, RaftHandle};
use crate::fsm::{ClusterState, Command, MasterState, ObserveReason, RejectKind};
use crate::instance::info::{
    parse_keyspace_keys, parse_replication, parse_role, parse_run_id, value_text, RoleReply,
};
use crate::instance::link::{server_error_line, Auth, Connector, Link, LinkError};
use crate::model::Addr;
use crate::shutdown::Shutdown;
use crate::tuning::{Knob, Tuning};
use crate::view::{InstanceInfo, MonitorView, ReportedRole};

/// Longest wait between two `Observe` attempts after failures.
const MAX_OBSERVE_BACKOFF: Duration = Duration::from_secs(2);
/// First wait after a failed `Observe`.
const MIN_OBSERVE_BACKOFF: Duration = Duration::from_millis(100);
/// `repl-diskless-sync-delay` while full syncs from a master that restarted empty are held
/// back: far longer than a failover takes, bounded so a hold nobody releases ends by itself.
/// An odd value, so that other nodes recognise the hold and do not take it for a setting.
pub(super) const HOLD_DELAY_SECS: u64 = 117;
/// Redis's default `repl-diskless-sync-delay`, restored on a hold whose owner is gone.
const DEFAULT_DISKLESS_DELAY: &str = "5";
/// How long a majority may take to confirm this node before it holds syncs.
const HOLD_QUORUM_TIMEOUT: Duration = Duration::from_millis(150);
/// How long the node that set a hold has to release it before others reset it.
pub(super) const ORPHAN_HOLD_GRACE: Duration = Duration::from_secs(3);
/// One `CLIENT PAUSE WRITE` of a master that restarted empty; renewed while the hold lasts, so
/// it ends by itself if this node goes away.
const PAUSE_MS: u64 = 2_000;
/// How long a replica may take to tell how many keys it holds after its master restarted.
const REPLICA_ASK_TIMEOUT: Duration = Duration::from_millis(300);
/// Reconnect period to a master whose connection just broke: a restarted master must be seen
/// before its replicas' next reconnect (once a second) resyncs them from it.
const MASTER_RECONNECT: Duration = Duration::from_millis(10);

/// How stale the reply and INFO times in the shared view may get while nothing else changes
/// (readers allow INFO up to 3 s old; Sentinel's own reply times move once a second).
const FRESHNESS_REPUBLISH: Duration = Duration::from_secs(1);

/// Shared writer of the view; each probe replaces only its own entry.
pub(crate) type ViewTx = Arc<watch::Sender<Arc<MonitorView>>>;

/// What the probe remembers between INFO replies to recognise a restart.
#[derive(Default)]
struct Restart {
    run_id: Option<String>,
    offset: i64,
    keys: Option<i64>,
    /// The master came back empty; ask its replicas whether they hold data.
    check_replicas: bool,
    /// Set when this instance, as the current master, came back empty.
    empty_since: Option<Instant>,
    /// Full syncs from this instance are held back (see [`Probe::hold_syncs`]).
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

/// The probe of one instance.
pub(crate) struct Probe {
    addr: Addr,
    master: String,
    raft: RaftHandle,
    view_tx: ViewTx,
    view_rx: watch::Receiver<Arc<MonitorView>>,
    info: InstanceInfo,
    link: Option<Link>,
    started: Instant,
    next_ping: Instant,
    next_info: Instant,
    next_connect: Instant,
    restart: Restart,
    /// Since when a master reports itself a replica.
    role_mismatch_since: Option<Instant>,
    /// A background `Observe` proposal (aborted when the probe goes away).
    inflight: Option<JoinHandle<Result<(), ProposeError>>>,
    observe_backoff: Duration,
    next_observe: Instant,
    /// This process's own stalls (see [`super::tilt`]).
    tilt: Arc<Tilt>,
    /// Which errors were logged, and repeats counted since (see [`super::errlog`]).
    errors: ErrorLog,
    /// This node's period settings (`SENTINEL DEBUG`).
    tuning: Arc<Tuning>,
    /// Opens the connections (with the node's TLS material for `tls = true` masters).
    connector: Connector,
    /// When this probe last wrote its entry of the view.
    published_at: Instant,
    /// The last step ran at the fast INFO period.
    was_fast: bool,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Some(h) = &self.inflight {
            h.abort();
        }
    }
}

impl Probe {
    pub(crate) fn new(
        addr: Addr,
        master: String,
        raft: RaftHandle,
        view_tx: ViewTx,
        tilt: Arc<Tilt>,
        tuning: Arc<Tuning>,
        connector: Connector,
    ) -> Probe {
        let now = Instant::now();
        let view_rx = view_tx.subscribe();
        Probe {
            info: InstanceInfo::new(addr.clone(), master.clone()),
            addr,
            master,
            raft,
            view_tx,
            view_rx,
            link: None,
            started: now,
            next_ping: now,
            next_info: now,
            next_connect: now,
            restart: Restart::default(),
            role_mismatch_since: None,
            inflight: None,
            observe_backoff: MIN_OBSERVE_BACKOFF,
            next_observe: now,
            tilt,
            errors: ErrorLog::new(errlog::SUMMARY_PERIOD, now),
            tuning,
            connector,
            published_at: now,
            was_fast: false,
        }
    }

    /// Runs until shutdown (or until the supervisor aborts it).
    pub(crate) async fn run(mut self, mut shutdown: Shutdown) {
        let mut state_rx = self.raft.watch_state();
        let mut tuning_rx = self.tuning.subscribe();
        debug!("probe started");
        loop {
            let state = state_rx.borrow_and_update().clone();
            let Some(m) = state.masters.get(&self.master) else {
                // The supervisor stops this probe soon; nothing to watch meanwhile.
                tokio::select! {
                    _ = shutdown.recv() => break,
                    _ = state_rx.changed() => continue,
                }
            };
            let fast = self.fast_mode(m);
            if fast && !self.was_fast {
                // The master is in trouble: read INFO now rather than at the end of the normal
                // period, so the failover compares replica offsets taken after the master
                // stopped answering, not up to a period before its last writes.
                self.next_info = self.next_info.min(Instant::now());
            }
            self.was_fast = fast;
            let t = Timings::of(m.down_after_ms, fast, self.periods());
            self.step(&state, m, &t).await;
            let wake = self.next_wake(m, &t);
            let observe_done = async {
                match self.inflight.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            };
            // The connection is watched while idle: an instance that closed it (killed,
            // restarting) is reconnected to now, not found out at the next PING.
            let link_closed = async {
                match self.link.as_mut() {
                    Some(l) => l.closed().await,
                    None => std::future::pending().await,
                }
            };
            let observed = tokio::select! {
                _ = shutdown.recv() => break,
                _ = sleep_until(wake) => None,
                r = state_rx.changed() => {
                    if r.is_err() {
                        break;
                    }
                    None
                }
                r = observe_done => Some(r),
                _ = link_closed => {
                    self.on_link_closed(&t);
                    None
                }
                r = tuning_rx.changed() => {
                    if r.is_err() {
                        break;
                    }
                    // New periods: probe now and follow them from here, rather than sleep
                    // out a period that was just shortened.
                    let now = Instant::now();
                    self.next_ping = self.next_ping.min(now);
                    self.next_info = self.next_info.min(now);
                    None
                }
            };
            if let Some(r) = observed {
                self.inflight = None;
                self.on_observed(r);
            }
        }
        debug!("probe stopped");
    }

    fn periods(&self) -> Periods {
        Periods {
            ping_max: self.tuning.get(Knob::PingPeriod),
            info: self.tuning.get(Knob::InfoPeriod),
        }
    }

    /// Probing runs at the fast INFO period while the master is in trouble here or in
    /// the cluster, so the failover executor chooses from fresh replica data.
    fn fast_mode(&self, m: &MasterState) -> bool {
        if m.is_odown() || m.failover.is_some() || m.reconf.is_some() {
            return true;
        }
        let view = self.view_rx.borrow();
        let Some(master) = view.get(&m.addr) else {
            return false;
        };
        let half = Duration::from_millis(m.down_after_ms / 2);
        master.sdown_since.is_some()
            || !master.connected
            || health::no_reply_since(master, self.started).is_some_and(|t| t.elapsed() > half)
    }

    fn next_wake(&self, m: &MasterState, t: &Timings) -> Instant {
        let mut wake = if self.link.is_some() {
            self.next_ping.min(self.next_info)
        } else {
            self.next_connect
        };
        // Wake exactly when the instance would turn subjectively down.
        if self.info.sdown_since.is_none() {
            if let Some(since) = health::no_reply_since(&self.info, self.started) {
                wake = wake.min(since + t.down_after + Duration::from_millis(1));
            }
        }
        if m.addr == self.addr && self.observe_pending(m) && self.inflight.is_none() {
            wake = wake.min(self.next_observe);
        }
        wake.max(Instant::now() + Duration::from_millis(1))
    }

    async fn step(&mut self, state: &ClusterState, m: &MasterState, t: &Timings) {
        let now = Instant::now();
        let auth = Auth::of(m);
        let is_master = m.addr == self.addr;
        if self.link.is_none() && now >= self.next_connect {
            self.connect(&auth, t, is_master).await;
        }
        if self.link.is_some() && Instant::now() >= self.next_ping {
            self.ping(t).await;
        }
        if self.link.is_some() && Instant::now() >= self.next_info {
            self.refresh_info(m, t, is_master).await;
        }
        self.evaluate(m, t, is_master);
        self.maintain_hold(m, t, is_master).await;
        self.publish();
        if is_master {
            self.observe(state, m);
        } else {
            self.restart.empty_since = None;
        }
    }

    async fn connect(&mut self, auth: &Auth, t: &Timings, is_master: bool) {
        let now = Instant::now();
        // A connection attempt counts as a PING: an instance that cannot be reached goes
        // down `down_after` after its last good reply, as in Sentinel.
        self.info.ping_pending_since.get_or_insert(now);
        let limit = self.io_budget(t, t.connect_timeout);
        match self.connector.connect(&self.addr, auth, limit).await {
            Ok(link) => {
                debug!("connected");
                self.link = Some(link);
                self.info.connected = true;
                self.next_ping = Instant::now();
                // Fresh INFO right after (re)connecting: a returning instance may be a stale
                // master that must be fenced at once.
                self.next_info = Instant::now();
            }
            Err(e) => {
                self.info.connected = false;
                // The current master, lost for less than down_after: probably restarting.
                let recent = health::no_reply_since(&self.info, self.started)
                    .is_some_and(|s| s.elapsed() < t.down_after);
                let period = if is_master && recent {
                    MASTER_RECONNECT
                } else {
                    t.ping_period
                };
                self.next_connect = now + period;
                self.record_error(&e);
            }
        }
    }

    async fn ping(&mut self, t: &Timings) {
        if self.link.is_none() {
            return;
        }
        let sent = Instant::now();
        self.next_ping = sent + t.ping_period;
        self.info.ping_pending_since.get_or_insert(sent);
        let limit = self.io_budget(t, t.ping_timeout);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let res = link.raw(&redis::cmd("PING"), "PING", limit).await;
        let now = Instant::now();
        match res {
            Ok(v) => {
                self.info.last_ping_reply = Some(now);
                if health::acceptable_ping_reply(&v) {
                    let was_down = self.info.sdown_since.is_some();
                    self.info.last_ok_ping_reply = Some(now);
                    self.info.ping_pending_since = None;
                    if was_down {
                        // Coming back: look at its role right away (fencing needs it).
                        self.next_info = now;
                    }
                    if matches!(v, Value::SimpleString(_) | Value::BulkString(_)) {
                        self.clear_error();
                    }
                } else {
                    let msg = match &v {
                        Value::ServerError(e) => server_error_line(e),
                        other => crate::instance::link::short(other),
                    };
                    self.set_error(format!("{} replied to PING: {msg}", self.addr));
                }
            }
            Err(e) => {
                self.record_error(&e);
                let stuck = self
                    .info
                    .ping_pending_since
                    .is_some_and(|p| now.duration_since(p) > t.down_after / 2);
                if e.is_broken() || stuck {
                    // Sentinel drops a link whose PING is unanswered for half of down_after;
                    // reconnecting tells a dead process from a slow link.
                    self.drop_link(t);
                }
            }
        }
    }

    /// Timeout for one blocking call: never past the moment the instance would turn
    /// subjectively down, so a hung connection cannot delay detection.
    fn io_budget(&self, t: &Timings, base: Duration) -> Duration {
        if self.info.sdown_since.is_some() {
            return base;
        }
        let Some(since) = health::no_reply_since(&self.info, self.started) else {
            return base;
        };
        let until = (since + t.down_after + Duration::from_millis(1))
            .saturating_duration_since(Instant::now());
        base.min(until).max(Duration::from_millis(5))
    }

    fn on_link_closed(&mut self, t: &Timings) {
        self.record_error(&LinkError::Broken {
            addr: self.addr.clone(),
            what: "idle".into(),
            detail: "closed by the instance".into(),
        });
        self.drop_link(t);
    }

    fn drop_link(&mut self, t: &Timings) {
        self.link = None;
        self.info.connected = false;
        // Reconnect at once after a clean break (killed clients), then every ping period.
        if self.next_connect <= Instant::now() {
            self.next_connect = Instant::now();
        } else {
            self.next_connect = Instant::now() + t.ping_period;
        }
    }

    async fn refresh_info(&mut self, m: &MasterState, t: &Timings, is_master: bool) {
        if self.link.is_none() {
            return;
        }
        self.next_info = Instant::now() + t.info_period;
        let limit = self.io_budget(t, t.info_timeout);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let mut p = redis::pipe();
        p.cmd("INFO")
            .arg("replication")
            .cmd("INFO")
            .arg("server")
            .cmd("ROLE")
            .cmd("INFO")
            .arg("keyspace");
        let replies = match link.pipeline(&p, 4, "INFO", limit).await {
            Ok(r) => r,
            Err(e) => {
                self.record_error(&e);
                if e.is_broken() {
                    self.drop_link(t);
                }
                return;
            }
        };
        match self.apply_info(&replies, m, is_master) {
            Ok(()) => {
                self.info.info_refresh = Some(Instant::now());
                if std::mem::take(&mut self.restart.check_replicas) {
                    self.check_replicas_hold_data(m, t).await;
                }
                // Without replicas there is nothing to keep, and pausing writes only hurts.
                if is_master
                    && self.restart.empty_since.is_some()
                    && self.restart.hold.is_none()
                    && !m.replicas.is_empty()
                {
                    self.hold_syncs(m, t).await;
                }
            }
            Err(msg) => {
                // A port that is not Redis, or garbage in INFO: say so, keep probing.
                self.set_error(format!("{}: {msg}", self.addr));
            }
        }
    }

    fn apply_info(&mut self, r: &[Value], m: &MasterState, is_master: bool) -> Result<(), String> {
        let text = |i: usize, what: &str| -> Result<String, String> {
            match &r[i] {
                Value::ServerError(e) => Err(format!("{what} failed: {}", server_error_line(e))),
                v => value_text(v)
                    .ok_or_else(|| format!("{what} returned {}", crate::instance::link::short(v))),
            }
        };
        let repl_text = text(0, "INFO replication")?;
        let server_text = text(1, "INFO server")?;
        let repl = parse_replication(&repl_text).map_err(|e| e.to_string())?;
        let run_id = parse_run_id(&server_text).map_err(|e| e.to_string())?;
        self.info.info_text =
            Some(format!("{}\r\n\r\n{}", server_text.trim_end(), repl_text).into());
        let role = match &r[2] {
            Value::ServerError(e) => return Err(format!("ROLE failed: {}", server_error_line(e))),
            v => parse_role(v).map_err(|e| e.to_string())?,
        };
        if role == RoleReply::Sentinel {
            return Err("this is a Sentinel, not a Redis server".into());
        }
        // Keys in every database: an empty restart must show however the data is spread.
        let dbsize = value_text(&r[3]).and_then(|t| parse_keyspace_keys(&t).ok());
        let now = Instant::now();
        let i = &mut self.info;
        if i.role != Some(repl.role) {
            if i.role.is_some() {
                info!(role = ?repl.role, "role changed");
            }
            self.restart.orphan_check_at =
                (repl.role == ReportedRole::Replica).then(|| now + ORPHAN_HOLD_GRACE);
            i.role = Some(repl.role);
            i.role_reported_at = Some(now);
        }
        i.repl_offset = repl.offset();
        i.master_host = repl.master_host.clone();
        i.master_port = repl.master_port;
        i.master_link_up = repl.master_link_up;
        i.master_link_down = repl.master_link_down_secs.map(Duration::from_secs);
        i.priority = repl.priority;
        i.replica_announced = repl.replica_announced;
        i.failover_state = repl.failover_state.clone();
        i.replicas = repl.replicas.iter().map(|r| r.addr.clone()).collect();

        // Restart detection. An empty restart of the current master must not be allowed to
        // wipe its replicas by a full resync: it is treated as a failure.
        let prev_run = self.restart.run_id.replace(run_id.clone());
        if let Some(prev) = prev_run.filter(|p| *p != run_id) {
            info!(
                old_run_id = %prev,
                run_id = %run_id,
                old_offset = self.restart.offset,
                offset = repl.master_repl_offset,
                keys = ?dbsize,
                "+reboot"
            );
            // Data would be lost if the replicas resynced from it: it came back with far
            // fewer keys than it had (clients may already have written a few), or than its
            // replicas hold (asked right after this INFO round when ours is no evidence).
            if is_master && repl.role == ReportedRole::Master && self.restart.empty_since.is_none()
            {
                if let Some(now_keys) = dbsize {
                    if lost_keys(now_keys, self.restart.keys) {
                        self.mark_empty_restart(m, now);
                    } else {
                        self.restart.check_replicas = true;
                    }
                }
            }
        }
        self.restart.keys = dbsize;
        self.restart.offset = repl.master_repl_offset;
        self.info.keys = dbsize;
        self.info.run_id = Some(run_id);
        self.clear_error();
        Ok(())
    }

    fn mark_empty_restart(&mut self, m: &MasterState, now: Instant) {
        warn!(
            master = %m.name,
            old_offset = self.restart.offset,
            "master restarted with an empty dataset; treating it as failed"
        );
        self.restart.empty_since = Some(now);
    }

    /// The master restarted empty and we saw no data on it before (our last INFO may
    /// predate the last writes): ask its replicas directly. If any holds keys, a resync
    /// from this master would wipe them.
    async fn check_replicas_hold_data(&mut self, m: &MasterState, t: &Timings) {
        let mut replicas: Vec<Addr> = m.replicas.iter().cloned().collect();
        for i in self.view_rx.borrow().instances.values() {
            if i.master == m.name && i.addr != self.addr && !replicas.contains(&i.addr) {
                replicas.push(i.addr.clone());
            }
        }
        let auth = Auth::of(m);
        let master_keys = self.restart.keys.unwrap_or(0);
        // All at once, each bounded: the replicas reconnect and ask for a full sync within
        // about a second, and dead addresses must not push the answer past that.
        let limit = REPLICA_ASK_TIMEOUT
            .min(t.connect_timeout + t.info_timeout)
            .max(Duration::from_millis(50));
        let asks = replicas.into_iter().map(|r| {
            let auth = auth.clone();
            let connector = &self.connector;
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
                        self.mark_empty_restart(m, Instant::now());
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => debug!(replica = %r, error = %e, "bad INFO keyspace from replica"),
                },
                Ok(Err(e)) => debug!(replica = %r, error = %e, "cannot ask replica for its keys"),
                Err(_) => debug!(replica = %r, "no answer from replica about its keys in time"),
            }
        }
    }

    /// Keeps the replicas of a master that restarted empty from resyncing from it, which
    /// would wipe the data only they still hold, until the failover repoints them. Redis starts
    /// a diskless full sync only after `repl-diskless-sync-delay`, so a long delay parks the
    /// replicas' sync requests; a replica repointed or promoted meanwhile keeps its data.
    /// Only with a confirmed majority: a minority never acts on Redis.
    async fn hold_syncs(&mut self, m: &MasterState, t: &Timings) {
        if let Err(e) = self.raft.read_index(HOLD_QUORUM_TIMEOUT).await {
            debug!(error = %e, "not holding full syncs: no majority confirmed");
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let current = match config_get_sync(link, t.info_timeout).await {
            Ok(v) => v,
            Err(e) => {
                warn!(error = %e, "cannot read the sync settings of the empty master; its replicas may resync from it");
                // Do not retry every round against an ACL that refuses CONFIG.
                self.restart.hold = Some(SyncHold::foreign());
                return;
            }
        };
        if current.1 == HOLD_DELAY_SECS.to_string() {
            debug!("full syncs already held by another node");
            self.restart.hold = Some(SyncHold::foreign());
            return;
        }
        let hold = HOLD_DELAY_SECS.to_string();
        // Set at once: the replicas reconnect and ask for a full sync within about a second,
        // and a commit under load may take a good part of that.
        if let Err(e) = config_set_sync(link, ("yes", &hold), false, t.info_timeout).await {
            warn!(error = %e, "cannot hold full syncs from the empty master; its replicas may resync from it");
            self.restart.hold = Some(SyncHold::foreign());
            return;
        }
        // Writes it took now would be lost when it is demoted: clients wait instead.
        let paused_until = pause_writes(link, t.info_timeout).await;
        // Then the instance's own settings are committed, so that any node can put them back
        // if this one goes away. The first record's node owns the hold. Without a record (a
        // member cannot read it yet, or no commit) this node alone restores them.
        let mut current = current;
        if self.raft.state().cluster_version() >= 4 {
            let cmd = Command::SyncHold {
                master: m.name.clone(),
                instance: self.addr.clone(),
                node: self.raft.node_id(),
                original: Some(current.clone()),
                at_ms: wall_ms(),
            };
            match self.raft.propose(cmd).await {
                Ok(_) => match self.raft.state().sync_holds.get(&self.addr) {
                    Some(r) if r.owner == self.raft.node_id() => {
                        current = (r.diskless_sync.clone(), r.diskless_sync_delay.clone());
                    }
                    _ => {
                        debug!("full syncs held by another node");
                        self.restart.hold = Some(SyncHold::foreign());
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
        self.restart.hold = Some(SyncHold {
            original: Some(current),
            since: Instant::now(),
            paused_until,
        });
    }

    /// Ends this node's hold once the instance is a replica (the failover moved past it) or
    /// the empty-restart failure was given up; resets a hold whose owner did not.
    async fn maintain_hold(&mut self, m: &MasterState, t: &Timings, is_master: bool) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let demoted = self.info.role == Some(ReportedRole::Replica);
        let given_up = is_master && self.restart.empty_since.is_none();
        match self.restart.hold.take() {
            Some(hold) if demoted || given_up => {
                let mine = hold.original.is_some();
                self.restart.hold = release_hold(link, hold, t).await;
                if mine && self.restart.hold.is_none() {
                    self.clear_hold_record(m).await;
                }
            }
            Some(mut hold) => {
                renew_pause(link, &mut hold, m, t).await;
                self.restart.hold = Some(hold);
            }
            None => {
                let due = self
                    .restart
                    .orphan_check_at
                    .is_some_and(|at| Instant::now() >= at);
                // A committed hold is the leader's to end, with the instance's own settings.
                let recorded = self.raft.state().sync_holds.contains_key(&self.addr);
                if due && demoted && !recorded {
                    self.restart.orphan_check_at = None;
                    reset_orphan_hold(link, t).await;
                }
            }
        }
    }

    /// The hold this node set ended and its settings are back: the record goes.
    async fn clear_hold_record(&self, m: &MasterState) {
        if !self.raft.state().sync_holds.contains_key(&self.addr) {
            return;
        }
        let cmd = Command::SyncHold {
            master: m.name.clone(),
            instance: self.addr.clone(),
            node: self.raft.node_id(),
            original: None,
            at_ms: wall_ms(),
        };
        if let Err(e) = self.raft.propose(cmd).await {
            // The leader clears it when it sees the hold gone.
            debug!(error = %e, "cannot clear the sync hold record");
        }
    }

    fn evaluate(&mut self, m: &MasterState, t: &Timings, is_master: bool) {
        let now = Instant::now();
        if is_master && self.info.role == Some(ReportedRole::Replica) {
            self.role_mismatch_since.get_or_insert(now);
        } else {
            self.role_mismatch_since = None;
        }
        // An empty restart stays a failure until a failover moves the master away, or for
        // one failover timeout if no replica can take over.
        if let Some(since) = self.restart.empty_since {
            if now.duration_since(since) > Duration::from_millis(m.failover_timeout_ms) {
                info!("giving up on the empty-restart failure; master is reachable");
                self.restart.empty_since = None;
            }
        }
        let reason = health::sdown_reason(
            &self.info,
            self.started,
            now,
            t,
            is_master,
            self.role_mismatch_since,
            self.restart.empty_since.is_some(),
        );
        let was = self.info.sdown_reason;
        // After a stall of this process the silence measured is its own: no new down state
        // from it (recovering is fine).
        let reason = match (was, reason) {
            (None, Some(_)) if self.tilt.active() => {
                debug!("not judging the instance down: in TILT");
                None
            }
            _ => reason,
        };
        match (was, reason) {
            (None, Some(r)) => {
                self.info.sdown_since = Some(now);
                info!(reason = ?r, error = self.info.last_error.as_deref().unwrap_or(""), "+sdown (local)");
            }
            (Some(_), None) => {
                self.info.sdown_since = None;
                info!("-sdown (local)");
            }
            _ => {}
        }
        self.info.sdown_reason = reason;
    }

    /// Writes this instance's entry into the shared view. A change in substance is written at
    /// once; a change of freshness alone (reply and INFO times, INFO text) at most every
    /// [`FRESHNESS_REPUBLISH`]: every write wakes every reader of the view, and with hundreds
    /// of instances per-PING writes cost more than all the probing itself.
    fn publish(&mut self) {
        let info = &self.info;
        let now = Instant::now();
        let due = now.saturating_duration_since(self.published_at) >= FRESHNESS_REPUBLISH;
        // While the master is in trouble a failover may choose from these offsets: a new
        // INFO shows at once (an empty restart's failover waits for INFO taken after it).
        let fast = self.was_fast;
        let mut wrote = false;
        self.view_tx.send_if_modified(|v| {
            if let Some(old) = v.instances.get(&info.addr) {
                // Substance first: it compares no INFO text.
                let news = old.differs_beyond_freshness(info)
                    || (fast && old.info_refresh != info.info_refresh)
                    || (due && old != info);
                if !news {
                    return false;
                }
            }
            wrote = true;
            Arc::make_mut(v)
                .instances
                .insert(info.addr.clone(), info.clone());
            true
        });
        if wrote {
            self.published_at = now;
        }
    }

    /// This node's committed observation differs from what it sees now, or its down vote is
    /// due for re-affirmation: a down vote only counts for `vote_ttl_ms` after its `at_ms`
    /// (see the fsm module docs), so it is renewed every `ASK-PERIOD`, and at least every
    /// quarter of that lifetime, while the master stays down here.
    fn observe_pending(&self, m: &MasterState) -> bool {
        let down_now = self.info.sdown_reason.is_some();
        let renew_ms = self.tuning.ms(Knob::AskPeriod).min(m.vote_ttl_ms() / 4);
        match m.observations.get(&self.raft.node_id()) {
            // `abs_diff`: a clock that stepped back also renews, or the vote would look
            // stamped in the future.
            Some(o) if o.down && down_now => wall_ms().abs_diff(o.at_ms) >= renew_ms,
            committed => committed.is_some_and(|o| o.down) != down_now,
        }
    }

    fn on_observed(&mut self, r: Result<Result<(), ProposeError>, tokio::task::JoinError>) {
        match r {
            Ok(Ok(())) => self.observe_backoff = MIN_OBSERVE_BACKOFF,
            Ok(Err(e)) => {
                let refused =
                    matches!(&e, ProposeError::Rejected(r) if r.kind == RejectKind::Precondition);
                if refused {
                    // The master moved or the state changed under us: re-evaluate next step.
                    debug!(error = %e, "observation refused");
                } else {
                    warn!(error = %e, "could not propose observation; retrying");
                }
                self.next_observe = Instant::now() + self.observe_backoff;
                self.observe_backoff = (self.observe_backoff * 2).min(MAX_OBSERVE_BACKOFF);
            }
            Err(_) => {}
        }
    }

    fn observe(&mut self, state: &ClusterState, m: &MasterState) {
        if self.inflight.is_some() {
            return;
        }
        // A node outside the voters cannot vote; do not spam the log with refusals.
        let me = self.raft.node_id();
        if !state.members.is_empty() && !state.members.get(&me).is_some_and(|x| x.voter) {
            return;
        }
        if !self.observe_pending(m) || Instant::now() < self.next_observe {
            return;
        }
        let down = self.info.sdown_reason.is_some();
        if down && self.tilt.active() {
            // No down vote (not even a renewal) from results this node's stall voided.
            return;
        }
        let cmd = Command::Observe {
            node: me,
            master: m.name.clone(),
            addr: self.addr.clone(),
            down,
            reason: self.info.sdown_reason.unwrap_or(ObserveReason::Ok),
            at_ms: wall_ms(),
        };
        debug!(down, "proposing observation");
        let raft = self.raft.clone();
        self.inflight = Some(tokio::spawn(
            async move { raft.propose(cmd).await.map(|_| ()) },
        ));
    }

    fn record_error(&mut self, e: &LinkError) {
        self.set_error(e.to_string());
    }

    fn set_error(&mut self, msg: String) {
        let v = self.errors.error(&msg, Instant::now());
        log_summaries(&v.summaries);
        if v.new {
            warn!(error = %msg, "probe error");
        } else {
            debug!(error = %msg, "probe error (repeated)");
        }
        self.info.last_error = Some(msg);
    }

    fn clear_error(&mut self) {
        if self.info.last_error.take().is_some() {
            if let Some(pending) = self.errors.recovered(Instant::now()) {
                log_summaries(&pending);
                info!("probe recovered");
            }
        }
    }
}

fn log_summaries(summaries: &[Summary]) {
    for s in summaries {
        warn!(
            error = %s.error,
            repeats = s.repeats,
            "same probe error {} times in the last {} s",
            s.repeats,
            s.over.as_secs().max(1)
        );
    }
}

/// A master that restarted holding `now` keys lost data, given `before` keys (its own before
/// the restart, or a replica's): it came back empty, or with less than half of them (a
/// restart that loaded its persistence files has about as many).
fn lost_keys(now: i64, before: Option<i64>) -> bool {
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

/// Keeps the empty master's writes paused while a failover can still come, then lets it
/// take writes again (the sync hold itself stays until the failure is given up).
async fn renew_pause(link: &mut Link, hold: &mut SyncHold, m: &MasterState, t: &Timings) {
    let Some(until) = hold.paused_until else {
        return;
    };
    let now = Instant::now();
    if now.duration_since(hold.since) > pause_limit(m) {
        warn!("no replica took over the empty master yet; letting it take writes again");
        unpause_writes(link, t.info_timeout).await;
        hold.paused_until = None;
    } else if until.saturating_duration_since(now) < Duration::from_millis(PAUSE_MS / 2) {
        hold.paused_until = pause_writes(link, t.info_timeout).await.or(Some(until));
    }
}

/// A node that held syncs and died before releasing them: back to Redis's default delay.
async fn reset_orphan_hold(link: &mut Link, t: &Timings) {
    let Ok((diskless, delay)) = config_get_sync(link, t.info_timeout).await else {
        return;
    };
    if delay != HOLD_DELAY_SECS.to_string() {
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

/// How long a master that restarted empty has its writes paused at most: a failover normally
/// replaces it in well under a second once every node has seen the restart.
fn pause_limit(m: &MasterState) -> Duration {
    Duration::from_millis(m.down_after_ms.saturating_mul(2)).max(Duration::from_secs(5))
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

#[cfg(test)]
mod tests {
    use super::lost_keys;

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
}
