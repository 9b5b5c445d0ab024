//! Leader placement: keep the Raft leader off the hosts that run monitored masters.
//!
//! Beside Redis, a coordinator node often shares a host with a master. If that node also leads,
//! losing the host costs an election (1-2 s) on top of failure detection before anyone can
//! fail the master over. So the leader hands leadership to a healthy, caught-up voter whose
//! host runs fewer monitored masters than its own. Hosts are compared by the host part of the
//! address each node announces (its peer address unless `announce_ip` is set).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use tracing::{debug, info};

use crate::consensus::{RaftHandle, RaftStatus, Role};
use crate::fsm::ClusterState;
use crate::model::{Addr, NodeId};
use crate::shutdown::Shutdown;

/// How often the leader reconsiders its placement.
const PERIOD: Duration = Duration::from_secs(2);
/// A transfer target may lag the leader's last index by at most this many entries.
const MAX_LAG: u64 = 5;
/// A target that did not take leadership is not asked again for this long. A node waiting to
/// be re-admitted after losing its data, or one halted on an entry it cannot read, ignores
/// the request; asking every period would stall proposals for an election timeout each time.
const REFUSED_FOR: Duration = Duration::from_secs(300);

fn host_of(addr: &str) -> Option<String> {
    addr.parse::<Addr>().ok().map(|a| a.host)
}

/// The host each member runs on, from what it announced (sentinel address, else peer address).
fn member_hosts(state: &ClusterState) -> BTreeMap<NodeId, String> {
    state
        .members
        .iter()
        .filter_map(|(id, m)| {
            let a = m
                .info
                .sentinel_addr
                .as_deref()
                .or(m.info.peer_addr.as_deref())?;
            Some((*id, host_of(a)?))
        })
        .collect()
}

/// Number of monitored masters whose current address is on `host`.
fn masters_on(state: &ClusterState, host: &str) -> usize {
    state
        .masters
        .values()
        .filter(|m| m.addr.host == host)
        .count()
}

/// Whom the leader should hand leadership to, if anyone: a voter that is reachable, caught up,
/// and whose host runs strictly fewer monitored masters (the fewest, then the most caught up).
/// No failover may be running: moving the leader mid-failover only delays it. Voters in
/// `refused` recently failed to take leadership and are passed over.
pub fn choose_target(
    state: &ClusterState,
    status: &RaftStatus,
    refused: &BTreeSet<NodeId>,
) -> Option<NodeId> {
    if status.role != Role::Leader || !status.voters_outgoing.is_empty() {
        return None;
    }
    if state
        .masters
        .values()
        .any(|m| m.failover.is_some() || m.failover_request.is_some())
    {
        return None;
    }
    let hosts = member_hosts(state);
    let mine = masters_on(state, hosts.get(&status.id)?);
    if mine == 0 {
        return None;
    }
    status
        .progress
        .iter()
        .filter(|p| p.id != status.id && status.voters.contains(&p.id) && p.recent_active)
        .filter(|p| !refused.contains(&p.id))
        .filter(|p| p.matched + MAX_LAG >= status.last_index)
        .filter_map(|p| Some((p, masters_on(state, hosts.get(&p.id)?))))
        .filter(|(_, n)| *n < mine)
        .min_by_key(|(p, n)| (*n, std::cmp::Reverse(p.matched), p.id))
        .map(|(p, _)| p.id)
}

/// Runs on every node; acts only while it leads.
pub async fn run(raft: RaftHandle, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refused: BTreeMap<NodeId, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        refused.retain(|_, at| at.elapsed() < REFUSED_FOR);
        let status = raft.status();
        let skip: BTreeSet<NodeId> = refused.keys().copied().collect();
        let Some(to) = choose_target(&raft.state(), &status, &skip) else {
            continue;
        };
        info!(
            from = status.id,
            to, "moving Raft leadership off a host that runs a monitored master"
        );
        if let Err(e) = raft.transfer_leader(to, raft.election_timeout() * 2).await {
            debug!(to, error = %e, "leadership transfer did not complete");
            refused.insert(to, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::PeerProgress;
    use crate::fsm::{Command, MasterSpec, MemberInfo};

    fn state(master_host: &str) -> ClusterState {
        let mut s =
            ClusterState::with_voters((1..=3).map(|i| (i, Some(format!("10.0.0.{i}:7701")))));
        let r = s.apply(
            1,
            &Command::Monitor {
                spec: MasterSpec {
                    down_after_ms: 1000,
                    failover_timeout_ms: 1000,
                    ..MasterSpec::new("m", format!("{master_host}:6379").parse().unwrap(), 2)
                },
            },
        );
        assert!(r.result.is_ok());
        s
    }

    fn status(leader: NodeId, matched: [u64; 3], active: [bool; 3]) -> RaftStatus {
        RaftStatus {
            id: leader,
            role: Role::Leader,
            leader_id: leader,
            last_index: 100,
            voters: vec![1, 2, 3],
            progress: (0..3)
                .map(|i| PeerProgress {
                    id: i as u64 + 1,
                    matched: matched[i],
                    next_idx: matched[i] + 1,
                    state: "Replicate".into(),
                    recent_active: active[i],
                })
                .collect(),
            ..RaftStatus::default()
        }
    }

    #[test]
    fn leader_on_the_master_host_moves_to_a_caught_up_healthy_voter() {
        let s = state("10.0.0.1");
        assert_eq!(
            choose_target(&s, &status(1, [100, 100, 100], [true; 3]), &BTreeSet::new()),
            Some(2)
        );
        // Node 2 lags: pick node 3.
        assert_eq!(
            choose_target(&s, &status(1, [100, 50, 100], [true; 3]), &BTreeSet::new()),
            Some(3)
        );
        // Node 3 unreachable and node 2 lagging: stay.
        assert_eq!(
            choose_target(
                &s,
                &status(1, [100, 50, 100], [true, true, false]),
                &BTreeSet::new()
            ),
            None
        );
        // Node 2 refused a transfer lately: pick node 3, or stay when it is the only one.
        let refused2 = BTreeSet::from([2]);
        assert_eq!(
            choose_target(&s, &status(1, [100, 100, 100], [true; 3]), &refused2),
            Some(3)
        );
        assert_eq!(
            choose_target(
                &s,
                &status(1, [100, 100, 100], [true, true, false]),
                &refused2
            ),
            None
        );
        // Not on the master's host: stay.
        assert_eq!(
            choose_target(&s, &status(2, [100, 100, 100], [true; 3]), &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn no_move_when_every_host_runs_a_master_or_a_failover_runs() {
        // All nodes on one host (loopback): nowhere better to go.
        let mut s = state("127.0.0.1");
        for id in 1..=3 {
            s.members.get_mut(&id).unwrap().info = MemberInfo {
                peer_addr: Some(format!("127.0.0.1:77{id}1")),
                ..MemberInfo::default()
            };
        }
        assert_eq!(
            choose_target(&s, &status(1, [100; 3], [true; 3]), &BTreeSet::new()),
            None
        );
        let mut s = state("10.0.0.1");
        s.masters.get_mut("m").unwrap().failover_request = Some(crate::fsm::FailoverRequestState {
            reason: crate::fsm::FailoverReason::Forced,
            target: None,
            at_ms: 0,
            index: 1,
        });
        assert_eq!(
            choose_target(&s, &status(1, [100; 3], [true; 3]), &BTreeSet::new()),
            None
        );
    }

    #[test]
    fn announced_sentinel_address_wins_over_peer_address() {
        let mut s = state("10.9.9.9");
        s.members.get_mut(&1).unwrap().info.sentinel_addr = Some("10.9.9.9:26379".into());
        assert_eq!(
            choose_target(&s, &status(1, [100; 3], [true; 3]), &BTreeSet::new()),
            Some(2)
        );
    }
}
