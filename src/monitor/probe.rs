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
use super::hold::{self, lost_keys, HeldInstance, HoldState};
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
    /// Holds on full syncs from this instance (see [`HoldState::hold_syncs`]).
    hold: HoldState,
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
    /// `PING`, built once: it is sent several times a second.
    ping_cmd: redis::Cmd,
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
            ping_cmd: redis::cmd("PING"),
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
                // The master is in trouble: read INFO (and PING) now rather than at the end of
                // the normal periods, so the failover compares replica offsets taken after
                // the master stopped answering, not up to a period before its last writes.
                self.next_info = self.next_info.min(Instant::now());
                self.next_ping = self.next_ping.min(Instant::now());
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
            if let Some(at) = health::down_at(&self.info, self.started, t) {
                wake = wake.min(at + Duration::from_millis(1));
            }
        }
        if m.addr == self.addr && self.inflight.is_none() {
            if self.observe_pending(m) {
                wake = wake.min(self.next_observe);
            } else if let Some(due) = self.renewal_due_in(m) {
                // The down vote is renewed every ASK-PERIOD, not at the next PING or
                // reconnect, which may be a third of down_after away.
                wake = wake.min(Instant::now() + due);
            }
        }
        wake.max(Instant::now() + Duration::from_millis(1))
    }

    /// How long until this node's committed down vote is due for re-affirmation (see
    /// [`Probe::observe_pending`]), while the master stays down here.
    fn renewal_due_in(&self, m: &MasterState) -> Option<Duration> {
        self.info.sdown_reason?;
        let o = m
            .observations
            .get(&self.raft.node_id())
            .filter(|o| o.down)?;
        let renew_ms = self.tuning.ms(Knob::AskPeriod).min(m.vote_ttl_ms() / 4);
        Some(Duration::from_millis(
            o.at_ms.saturating_add(renew_ms).saturating_sub(wall_ms()),
        ))
    }

    async fn step(&mut self, state: &ClusterState, m: &MasterState, t: &Timings) {
        let now = Instant::now();
        let auth = Auth::of(m);
        let is_master = m.addr == self.addr;
        if self.link.is_none() && now >= self.next_connect {
            self.connect(&auth, t, is_master).await;
        }
        // While the instance answers, INFO first: its reply also proves that, and stands for
        // the PING due with it (see `refresh_info`). After (re)connecting or while a request
        // is unanswered, PING first: its reply, or error, is the plainer one.
        let answering = self.info.ping_pending_since.is_none();
        if answering && self.link.is_some() && Instant::now() >= self.next_info {
            self.refresh_info(m, t, is_master).await;
        }
        if self.link.is_some() && Instant::now() >= self.next_ping {
            self.ping(t, is_master).await;
        }
        if !answering && self.link.is_some() && Instant::now() >= self.next_info {
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

    async fn ping(&mut self, t: &Timings, is_master: bool) {
        if self.link.is_none() {
            return;
        }
        let sent = Instant::now();
        self.next_ping = sent + Self::ping_period(t, is_master);
        self.info.ping_pending_since.get_or_insert(sent);
        let limit = self.io_budget(t, t.ping_timeout);
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let res = link.raw(&self.ping_cmd, "PING", limit).await;
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

    fn ping_period(t: &Timings, is_master: bool) -> Duration {
        if is_master {
            t.ping_period
        } else {
            t.replica_ping_period
        }
    }

    /// Timeout for one blocking call: never past the moment the instance would turn
    /// subjectively down, so a hung connection cannot delay detection.
    fn io_budget(&self, t: &Timings, base: Duration) -> Duration {
        if self.info.sdown_since.is_some() {
            return base;
        }
        let Some(at) = health::down_at(&self.info, self.started, t) else {
            return base;
        };
        let until = (at + Duration::from_millis(1)).saturating_duration_since(Instant::now());
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
        let sent = Instant::now();
        self.next_info = sent + t.info_period;
        // Unanswered, it counts like an unanswered PING.
        self.info.ping_pending_since.get_or_insert(sent);
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
                let now = Instant::now();
                self.info.info_refresh = Some(now);
                // A valid INFO reply proves the instance answers as well as a PONG does, and
                // it comes after the replies to every earlier request on this connection:
                // it stands for the PING that was due, one exchange fewer per INFO period.
                self.info.last_ping_reply = Some(now);
                self.info.last_ok_ping_reply = Some(now);
                self.info.ping_pending_since = None;
                self.next_ping = self.next_ping.max(now + Self::ping_period(t, is_master));
                if std::mem::take(&mut self.restart.check_replicas) {
                    self.check_replicas_hold_data(m, t).await;
                }
                // Without replicas there is nothing to keep, and pausing writes only hurts.
                if is_master
                    && self.restart.empty_since.is_some()
                    && !self.restart.hold.is_held()
                    && !m.replicas.is_empty()
                {
                    let at = HeldInstance {
                        raft: &self.raft,
                        addr: &self.addr,
                    };
                    self.restart
                        .hold
                        .hold_syncs(at, self.link.as_mut(), m, t)
                        .await;
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
            self.restart.hold.on_role_change(repl.role, now);
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
        let replicas = hold::replicas_to_ask(m, &self.view_rx.borrow(), &self.addr);
        let auth = Auth::of(m);
        let master_keys = self.restart.keys.unwrap_or(0);
        if hold::replicas_hold_data(&self.connector, replicas, &auth, master_keys, t).await {
            self.mark_empty_restart(m, Instant::now());
        }
    }

    /// Ends or renews this node's hold, or resets one another node left (see
    /// [`HoldState::maintain`]).
    async fn maintain_hold(&mut self, m: &MasterState, t: &Timings, is_master: bool) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let demoted = self.info.role == Some(ReportedRole::Replica);
        let given_up = is_master && self.restart.empty_since.is_none();
        let at = HeldInstance {
            raft: &self.raft,
            addr: &self.addr,
        };
        self.restart
            .hold
            .maintain(at, link, m, t, demoted, given_up)
            .await;
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
