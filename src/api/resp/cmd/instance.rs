//! Sentinel "instance maps" (SENTINEL MASTER/MASTERS/REPLICAS/SENTINELS): Sentinel's field
//! names in Sentinel's order, every value a bulk string. Replicated facts (address, epoch,
//! quorum, timings, known replicas, ODOWN, failover) come from the applied state; what only
//! this node can see (run id, ping ages, link, role, offsets) from its monitor view.

use tokio::time::Instant;

use super::Shared;
use crate::api::flags;
use crate::api::resp::frame::Frame;
use crate::fsm::{ClusterState, MasterState};
use crate::model::{Addr, NodeId};
use crate::view::{InstanceInfo, MonitorView, ReportedRole};

/// Another coordinator node, as SENTINEL SENTINELS lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Raft id.
    pub id: NodeId,
    /// Its 40-hex run id, or "" until it announced one.
    pub run_id: String,
    /// Its sentinel port address.
    pub addr: Addr,
    /// The leader sees it as unreachable.
    pub disconnected: bool,
}

/// Other members that announced a sentinel address (never this node), in id order.
pub fn other_sentinels(sh: &Shared, st: &ClusterState) -> Vec<Peer> {
    let me = sh.ctx.raft.node_id();
    let status = sh.ctx.raft.status();
    let leader = status.leader_id == me;
    st.members
        .iter()
        .filter(|(id, m)| **id != me && m.voter)
        .filter_map(|(id, m)| {
            let addr: Addr = m.info.sentinel_addr.as_deref()?.parse().ok()?;
            // Only the leader tracks who answers; elsewhere a peer is assumed reachable.
            let disconnected = leader
                && status
                    .progress
                    .iter()
                    .any(|p| p.id == *id && !p.recent_active);
            Some(Peer {
                id: *id,
                run_id: m.info.run_id.clone().unwrap_or_default(),
                addr,
                disconnected,
            })
        })
        .collect()
}

struct Builder(Vec<(Frame, Frame)>);

impl Builder {
    fn kv(&mut self, k: &'static str, v: impl Into<String>) {
        self.0.push((Frame::bulk_static(k), Frame::bulk(v.into())));
    }
    fn num(&mut self, k: &'static str, v: impl Into<i64>) {
        self.0.push((Frame::bulk_static(k), Frame::bulk_int(v)));
    }
}

fn age(now: Instant, t: Option<Instant>) -> i64 {
    t.map_or(0, |t| now.saturating_duration_since(t).as_millis() as i64)
}

/// Head fields common to every instance type, up to `down-after-milliseconds`.
#[allow(clippy::too_many_arguments)]
fn head(
    b: &mut Builder,
    name: String,
    addr: &Addr,
    info: Option<&InstanceInfo>,
    flags: String,
    failover_state: Option<&str>,
    now: Instant,
    down_after_ms: u64,
    odown_ms: Option<i64>,
) {
    b.kv("name", name);
    b.kv("ip", addr.host.clone());
    b.num("port", addr.port);
    b.kv(
        "runid",
        info.and_then(|i| i.run_id.clone()).unwrap_or_default(),
    );
    b.kv("flags", flags);
    b.num("link-pending-commands", 0);
    b.num("link-refcount", 1);
    if let Some(fs) = failover_state {
        b.kv("failover-state", fs);
    }
    b.num(
        "last-ping-sent",
        age(now, info.and_then(|i| i.ping_pending_since)),
    );
    b.num(
        "last-ok-ping-reply",
        age(now, info.and_then(|i| i.last_ok_ping_reply)),
    );
    b.num(
        "last-ping-reply",
        age(now, info.and_then(|i| i.last_ping_reply)),
    );
    if let Some(since) = info.and_then(|i| i.sdown_since) {
        b.num("s-down-time", age(now, Some(since)));
    }
    if let Some(ms) = odown_ms {
        b.num("o-down-time", ms);
    }
    b.num("down-after-milliseconds", down_after_ms as i64);
}

/// The map of one master.
pub fn master_map(
    sh: &Shared,
    st: &ClusterState,
    view: &MonitorView,
    m: &MasterState,
    now: Instant,
) -> Frame {
    let info = view.get(&m.addr);
    let in_failover = m.failover.is_some();
    let fl = flags::master(sh.ctx.raft.node_id(), m, info).join(",");
    let odown_ms = m
        .odown_since_ms
        .map(|t| crate::clock::wall_ms().saturating_sub(t) as i64);
    let mut b = Builder(Vec::with_capacity(24));
    head(
        &mut b,
        m.name.clone(),
        &m.addr,
        info,
        fl,
        in_failover.then_some("wait_promotion"),
        now,
        m.down_after_ms,
        odown_ms,
    );
    b.num("info-refresh", age(now, info.and_then(|i| i.info_refresh)));
    let role = match info.and_then(|i| i.role) {
        Some(ReportedRole::Replica) => "slave",
        _ => "master",
    };
    b.kv("role-reported", role);
    b.num(
        "role-reported-time",
        age(now, info.and_then(|i| i.role_reported_at)),
    );
    b.num("config-epoch", m.config_epoch as i64);
    b.num("num-slaves", m.replicas.len() as i64);
    b.num("num-other-sentinels", other_sentinels(sh, st).len() as i64);
    b.num("quorum", m.quorum as i64);
    b.num("failover-timeout", m.failover_timeout_ms as i64);
    b.num("parallel-syncs", m.parallel_syncs as i64);
    if let Some(s) = &m.notification_script {
        b.kv("notification-script", s.clone());
    }
    if let Some(s) = &m.client_reconfig_script {
        b.kv("client-reconfig-script", s.clone());
    }
    Frame::Map(b.0)
}

/// Maps of a master's replicas that announce themselves (`replica_announced:0` hides one).
pub fn replica_maps(view: &MonitorView, m: &MasterState, now: Instant) -> Vec<Frame> {
    m.replicas
        .iter()
        .filter_map(|r| {
            let info = view.get(r);
            if info.is_some_and(|i| !i.replica_announced) {
                return None;
            }
            let fl = flags::replica(m, r, info).join(",");
            let mut b = Builder(Vec::with_capacity(21));
            head(
                &mut b,
                r.to_string(),
                r,
                info,
                fl,
                None,
                now,
                m.down_after_ms,
                None,
            );
            b.num("info-refresh", age(now, info.and_then(|i| i.info_refresh)));
            let role = match info.and_then(|i| i.role) {
                Some(ReportedRole::Master) => "master",
                _ => "slave",
            };
            b.kv("role-reported", role);
            b.num(
                "role-reported-time",
                age(now, info.and_then(|i| i.role_reported_at)),
            );
            let link_up = info.is_some_and(|i| i.master_link_up);
            let link_down_ms = info
                .and_then(|i| i.master_link_down)
                .map_or(0, |d| d.as_millis() as i64);
            b.num(
                "master-link-down-time",
                if link_up { 0 } else { link_down_ms },
            );
            b.kv("master-link-status", if link_up { "ok" } else { "err" });
            b.kv(
                "master-host",
                info.and_then(|i| i.master_host.clone())
                    .unwrap_or_else(|| "?".into()),
            );
            b.num("master-port", info.and_then(|i| i.master_port).unwrap_or(0));
            b.num(
                "slave-priority",
                info.and_then(|i| i.priority).unwrap_or(100) as i64,
            );
            b.num("slave-repl-offset", info.map_or(0, |i| i.repl_offset));
            b.num(
                "replica-announced",
                info.is_none_or(|i| i.replica_announced) as i64,
            );
            Some(Frame::Map(b.0))
        })
        .collect()
}

/// Maps of the other coordinator nodes, as Sentinel lists its peers.
pub fn sentinel_maps(peers: &[Peer], m: &MasterState) -> Vec<Frame> {
    peers
        .iter()
        .map(|p| {
            let fl = if p.disconnected {
                "sentinel,disconnected"
            } else {
                "sentinel"
            };
            let mut b = Builder(Vec::with_capacity(14));
            b.kv("name", p.run_id.clone());
            b.kv("ip", p.addr.host.clone());
            b.num("port", p.addr.port);
            b.kv("runid", p.run_id.clone());
            b.kv("flags", fl);
            b.num("link-pending-commands", 0);
            b.num("link-refcount", 1);
            b.num("last-ping-sent", 0);
            b.num("last-ok-ping-reply", 0);
            b.num("last-ping-reply", 0);
            b.num("down-after-milliseconds", m.down_after_ms as i64);
            b.num("last-hello-message", 0);
            b.kv("voted-leader", "?");
            b.num("voted-leader-epoch", 0);
            Frame::Map(b.0)
        })
        .collect()
}
