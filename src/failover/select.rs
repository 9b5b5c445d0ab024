//! Choosing the replica to promote. Pure: the master's committed state and this node's
//! view in, a candidate (or every reason there is none) out.
//!
//! Sentinel's rules, with its periods scaled to ours: never `replica-priority 0`; skip
//! replicas that are down, disconnected, slow to answer, without fresh INFO, reporting
//! themselves master, or whose link to the master has been down far longer than the master
//! has. Order: lower priority, then higher replication offset, then smaller run id
//! (case-insensitive, unknown last), then address so the choice is deterministic.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::fsm::MasterState;
use crate::model::Addr;
use crate::view::{InstanceInfo, MonitorView, ReportedRole};

/// INFO older than this is too old to compare offsets (normal period 1 s; 100 ms while the
/// master is in trouble).
pub const MAX_INFO_AGE: Duration = Duration::from_millis(3000);

/// What the selection needs besides the state and the view.
#[derive(Clone, Debug)]
pub struct SelectParams<'a> {
    /// Now, on the view's clock.
    pub now: Instant,
    /// How long the master has been down (zero for a healthy master).
    pub master_down_for: Duration,
    /// The operator's choice, if any: only it may be chosen.
    pub target: Option<&'a Addr>,
    /// Planned switchover: the candidate must be replicating from the current master with
    /// its link up (Redis `FAILOVER TO` requires it).
    pub require_synced: bool,
}

/// Why a replica cannot be promoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// Not probed by this node yet.
    NotWatched,
    /// Subjectively down here.
    Down,
    /// No connection.
    Disconnected,
    /// Its last PING has been pending too long.
    SlowToAnswer(Duration),
    /// No INFO yet, or too old.
    StaleInfo,
    /// `replica-priority 0`.
    PriorityZero,
    /// It reports `role:master`.
    ReportsMaster,
    /// Its link to the master has been down too long.
    LinkDownTooLong(Duration),
    /// It does not replicate from the current master with the link up.
    NotSynced,
    /// It is the current master.
    IsMaster,
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::NotWatched => f.write_str("not watched yet"),
            Exclusion::Down => f.write_str("down"),
            Exclusion::Disconnected => f.write_str("disconnected"),
            Exclusion::SlowToAnswer(d) => write!(f, "no PING reply for {} ms", d.as_millis()),
            Exclusion::StaleInfo => f.write_str("no fresh INFO"),
            Exclusion::PriorityZero => f.write_str("replica-priority 0"),
            Exclusion::ReportsMaster => f.write_str("reports role master"),
            Exclusion::LinkDownTooLong(d) => {
                write!(f, "master link down for {} s", d.as_secs())
            }
            Exclusion::NotSynced => f.write_str("not in sync with the master"),
            Exclusion::IsMaster => f.write_str("is the current master"),
        }
    }
}

/// No replica can be promoted; every replica considered and why it was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoCandidate {
    /// Refused replicas.
    pub excluded: Vec<(Addr, Exclusion)>,
    /// The operator's target was not a known replica.
    pub unknown_target: Option<Addr>,
}

impl fmt::Display for NoCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(t) = &self.unknown_target {
            return write!(f, "{t} is not a known replica");
        }
        if self.excluded.is_empty() {
            return f.write_str("no replicas known");
        }
        let parts: Vec<String> = self
            .excluded
            .iter()
            .map(|(a, why)| format!("{a} {why}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Every replica of `m` this node knows of: committed ones and those in its view.
pub fn replicas_of(m: &MasterState, view: &MonitorView) -> BTreeSet<Addr> {
    let mut out: BTreeSet<Addr> = m.replicas.iter().cloned().collect();
    for i in view.instances.values() {
        if i.master == m.name {
            out.insert(i.addr.clone());
        }
    }
    out.remove(&m.addr);
    out
}

/// Connected, not down, answering, with fresh INFO.
pub fn healthy(i: &InstanceInfo, now: Instant) -> bool {
    i.connected
        && i.sdown_since.is_none()
        && i.info_refresh
            .is_some_and(|t| now.saturating_duration_since(t) <= MAX_INFO_AGE)
}

/// The replica reports `master` as its master.
pub fn follows(i: &InstanceInfo, master: &Addr) -> bool {
    i.role == Some(ReportedRole::Replica)
        && i.master_host.as_deref() == Some(master.host.as_str())
        && i.master_port == Some(master.port)
}

/// Checks one replica.
pub fn check(
    m: &MasterState,
    info: Option<&InstanceInfo>,
    p: &SelectParams<'_>,
) -> Result<(), Exclusion> {
    let Some(i) = info else {
        return Err(Exclusion::NotWatched);
    };
    if i.addr == m.addr {
        return Err(Exclusion::IsMaster);
    }
    if i.sdown_since.is_some() {
        return Err(Exclusion::Down);
    }
    if !i.connected {
        return Err(Exclusion::Disconnected);
    }
    let down_after = Duration::from_millis(m.down_after_ms);
    if let Some(since) = i.ping_pending_since {
        let pending = p.now.saturating_duration_since(since);
        if pending > down_after / 2 {
            return Err(Exclusion::SlowToAnswer(pending));
        }
    }
    match i.info_refresh {
        Some(at) if p.now.saturating_duration_since(at) <= MAX_INFO_AGE => {}
        _ => return Err(Exclusion::StaleInfo),
    }
    match i.role {
        Some(ReportedRole::Replica) => {}
        Some(ReportedRole::Master) => return Err(Exclusion::ReportsMaster),
        None => return Err(Exclusion::StaleInfo),
    }
    match i.priority {
        Some(0) => return Err(Exclusion::PriorityZero),
        Some(_) => {}
        None => return Err(Exclusion::StaleInfo),
    }
    if let Some(link_down) = i.master_link_down {
        if link_down > p.master_down_for + 10 * down_after {
            return Err(Exclusion::LinkDownTooLong(link_down));
        }
    }
    if p.require_synced {
        let follows = i.master_host.as_deref() == Some(m.addr.host.as_str())
            && i.master_port == Some(m.addr.port);
        if !follows || !i.master_link_up {
            return Err(Exclusion::NotSynced);
        }
    }
    Ok(())
}

/// Sentinel's order: lower priority first, then higher offset, then smaller run id
/// (case-insensitive; unknown run ids last), then the address.
pub fn compare(a: &InstanceInfo, b: &InstanceInfo) -> Ordering {
    let prio = |i: &InstanceInfo| i.priority.unwrap_or(u32::MAX);
    prio(a)
        .cmp(&prio(b))
        .then(b.repl_offset.cmp(&a.repl_offset))
        .then_with(|| match (&a.run_id, &b.run_id) {
            (Some(x), Some(y)) => x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.addr.cmp(&b.addr))
}

/// Chooses the replica to promote.
pub fn select(
    m: &MasterState,
    view: &MonitorView,
    p: &SelectParams<'_>,
) -> Result<Addr, NoCandidate> {
    let all = replicas_of(m, view);
    if let Some(t) = p.target {
        if !all.contains(t) {
            return Err(NoCandidate {
                excluded: Vec::new(),
                unknown_target: Some(t.clone()),
            });
        }
    }
    let mut ok: Vec<&InstanceInfo> = Vec::new();
    let mut excluded = Vec::new();
    for addr in all.iter().filter(|a| p.target.is_none_or(|t| t == *a)) {
        let info = view.get(addr);
        match check(m, info, p) {
            Ok(()) => ok.push(info.expect("checked")),
            Err(why) => excluded.push((addr.clone(), why)),
        }
    }
    ok.sort_by(|a, b| compare(a, b));
    match ok.first() {
        Some(best) => Ok(best.addr.clone()),
        None => Err(NoCandidate {
            excluded,
            unknown_target: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{ClusterState, Command, MasterSpec};

    fn addr(port: u16) -> Addr {
        Addr::new("127.0.0.1", port).unwrap()
    }

    fn master() -> MasterState {
        let mut s = ClusterState::default();
        let spec = MasterSpec {
            down_after_ms: 1000,
            failover_timeout_ms: 10_000,
            ..MasterSpec::new("m", addr(6379), 2)
        };
        let r = s.apply(1, &Command::Monitor { spec });
        assert!(r.result.is_ok());
        s.masters["m"].clone()
    }

    /// A healthy replica of 127.0.0.1:6379 probed just now.
    fn replica(port: u16, now: Instant, prio: u32, offset: i64, run_id: &str) -> InstanceInfo {
        let mut i = InstanceInfo::new(addr(port), "m");
        i.connected = true;
        i.last_ok_ping_reply = Some(now);
        i.info_refresh = Some(now);
        i.role = Some(ReportedRole::Replica);
        i.priority = Some(prio);
        i.repl_offset = offset;
        i.run_id = (!run_id.is_empty()).then(|| run_id.to_string());
        i.master_host = Some("127.0.0.1".into());
        i.master_port = Some(6379);
        i.master_link_up = true;
        i
    }

    fn view(items: Vec<InstanceInfo>) -> MonitorView {
        MonitorView {
            instances: items.into_iter().map(|i| (i.addr.clone(), i)).collect(),
        }
    }

    fn params(now: Instant) -> SelectParams<'static> {
        SelectParams {
            now,
            master_down_for: Duration::from_secs(1),
            target: None,
            require_synced: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn order_is_priority_then_offset_then_run_id() {
        let now = Instant::now();
        let m = master();
        let v = view(vec![
            replica(1, now, 100, 500, "b"),
            replica(2, now, 100, 900, "c"),
            replica(3, now, 50, 10, "d"),
        ]);
        assert_eq!(select(&m, &v, &params(now)).unwrap(), addr(3));
        let v = view(vec![
            replica(1, now, 100, 500, "b"),
            replica(2, now, 100, 900, "c"),
        ]);
        assert_eq!(select(&m, &v, &params(now)).unwrap(), addr(2));
        let v = view(vec![
            replica(1, now, 100, 900, "B"),
            replica(2, now, 100, 900, "a"),
            replica(3, now, 100, 900, ""),
        ]);
        assert_eq!(select(&m, &v, &params(now)).unwrap(), addr(2));
        let v = view(vec![
            replica(4, now, 100, 900, ""),
            replica(3, now, 100, 900, ""),
        ]);
        assert_eq!(select(&m, &v, &params(now)).unwrap(), addr(3));
    }

    #[tokio::test(start_paused = true)]
    async fn priority_zero_is_never_promoted() {
        let now = Instant::now();
        let m = master();
        let v = view(vec![
            replica(1, now, 0, 10_000, "a"),
            replica(2, now, 100, 1, "b"),
        ]);
        assert_eq!(select(&m, &v, &params(now)).unwrap(), addr(2));
        let v = view(vec![replica(1, now, 0, 10_000, "a")]);
        let e = select(&m, &v, &params(now)).unwrap_err();
        assert_eq!(e.excluded, vec![(addr(1), Exclusion::PriorityZero)]);
        assert_eq!(e.to_string(), "127.0.0.1:1 replica-priority 0");
        // Even when the operator names it.
        let mut p = params(now);
        let t = addr(1);
        p.target = Some(&t);
        assert!(select(&m, &v, &p).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn unhealthy_and_stale_replicas_are_excluded() {
        let now = Instant::now();
        let later = now + Duration::from_secs(10);
        let m = master();
        let mut down = replica(1, later, 1, 9, "a");
        down.sdown_since = Some(later);
        let mut disc = replica(2, later, 1, 9, "a");
        disc.connected = false;
        let mut slow = replica(3, later, 1, 9, "a");
        slow.ping_pending_since = Some(later - Duration::from_millis(600));
        let stale = replica(4, now, 1, 9, "a");
        let mut master_role = replica(5, later, 1, 9, "a");
        master_role.role = Some(ReportedRole::Master);
        let mut link = replica(6, later, 1, 9, "a");
        link.master_link_down = Some(Duration::from_secs(60));
        let mut no_info = replica(7, later, 1, 9, "a");
        no_info.info_refresh = None;
        let v = view(vec![down, disc, slow, stale, master_role, link, no_info]);
        let mut m2 = m.clone();
        m2.replicas.insert(addr(8));
        let e = select(&m2, &v, &params(later)).unwrap_err();
        let why: Vec<Exclusion> = e.excluded.iter().map(|(_, w)| w.clone()).collect();
        assert_eq!(
            why,
            vec![
                Exclusion::Down,
                Exclusion::Disconnected,
                Exclusion::SlowToAnswer(Duration::from_millis(600)),
                Exclusion::StaleInfo,
                Exclusion::ReportsMaster,
                Exclusion::LinkDownTooLong(Duration::from_secs(60)),
                Exclusion::StaleInfo,
                Exclusion::NotWatched,
            ]
        );
        // A link down for less than the master's downtime + 10 x down_after is fine.
        let mut ok_link = replica(6, later, 1, 9, "a");
        ok_link.master_link_down = Some(Duration::from_secs(5));
        let v = view(vec![ok_link]);
        assert_eq!(select(&m, &v, &params(later)).unwrap(), addr(6));
    }

    #[tokio::test(start_paused = true)]
    async fn target_and_switchover_rules() {
        let now = Instant::now();
        let m = master();
        let v = view(vec![
            replica(1, now, 100, 900, "a"),
            replica(2, now, 100, 100, "b"),
        ]);
        let t = addr(2);
        let mut p = params(now);
        p.target = Some(&t);
        assert_eq!(select(&m, &v, &p).unwrap(), addr(2));
        let unknown = addr(9);
        p.target = Some(&unknown);
        let e = select(&m, &v, &p).unwrap_err();
        assert_eq!(e.to_string(), "127.0.0.1:9 is not a known replica");

        let mut lagging = replica(1, now, 100, 900, "a");
        lagging.master_link_up = false;
        let mut elsewhere = replica(2, now, 100, 100, "b");
        elsewhere.master_port = Some(7000);
        let v = view(vec![lagging, elsewhere]);
        let mut p = params(now);
        p.require_synced = true;
        let e = select(&m, &v, &p).unwrap_err();
        assert!(e.excluded.iter().all(|(_, w)| *w == Exclusion::NotSynced));
        p.require_synced = false;
        assert_eq!(select(&m, &v, &p).unwrap(), addr(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_replicas_at_all() {
        let now = Instant::now();
        let e = select(&master(), &MonitorView::default(), &params(now)).unwrap_err();
        assert_eq!(e.to_string(), "no replicas known");
    }
}
