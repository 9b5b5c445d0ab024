//! Sentinel's instance flags, computed once for both client ports: the Sentinel port joins
//! them with commas (SENTINEL MASTER/REPLICAS), the gRPC API lists them (GetMaster), and
//! the two must never disagree about one instance.
//!
//! Replicated facts (ODOWN, a failover and its candidate, reconfiguration stages) come from
//! the applied state; what only this node sees (its link, its subjective down) from its
//! monitor view. An instance the monitor has not probed yet is unknown, not disconnected.

use crate::fsm::{FailoverReason, MasterState, ReconfStage};
use crate::model::{Addr, NodeId};
use crate::view::InstanceInfo;

/// Flags of master `m` as node `me` sees it, in Sentinel's order.
pub fn master(me: NodeId, m: &MasterState, info: Option<&InstanceInfo>) -> Vec<&'static str> {
    // This node's committed down vote counts too: its probe may have been restarted since.
    let sdown = info.is_some_and(|i| i.sdown_since.is_some())
        || m.observations.get(&me).is_some_and(|o| o.down);
    let forced = m
        .failover
        .as_ref()
        .is_some_and(|f| f.reason != FailoverReason::Odown);
    pick(&[
        ("s_down", sdown),
        ("o_down", m.is_odown()),
        ("master", true),
        ("disconnected", info.is_some_and(|i| !i.connected)),
        ("failover_in_progress", m.failover.is_some()),
        ("force_failover", forced),
    ])
}

/// Flags of replica `r` of master `m`, in Sentinel's order.
pub fn replica(m: &MasterState, r: &Addr, info: Option<&InstanceInfo>) -> Vec<&'static str> {
    let stage = m.reconf.as_ref().and_then(|rc| rc.replicas.get(r)).copied();
    let promoted = m.failover.as_ref().is_some_and(|f| &f.candidate == r);
    pick(&[
        ("s_down", info.is_some_and(|i| i.sdown_since.is_some())),
        ("slave", true),
        ("disconnected", info.is_some_and(|i| !i.connected)),
        ("promoted", promoted),
        ("reconf_sent", stage == Some(ReconfStage::Sent)),
        ("reconf_inprog", stage == Some(ReconfStage::InProgress)),
        ("reconf_done", stage == Some(ReconfStage::Done)),
    ])
}

fn pick(list: &[(&'static str, bool)]) -> Vec<&'static str> {
    list.iter().filter(|(_, on)| *on).map(|(f, _)| *f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{ClusterState, Command, MasterSpec};

    fn state_with_master() -> ClusterState {
        let mut st = ClusterState::with_voters((1..=3).map(|i| (i, None)));
        let spec = MasterSpec::new("m", "10.0.0.1:6379".parse().unwrap(), 2);
        let applied = st.apply(
            6,
            &Command::Bootstrap {
                masters: vec![spec],
            },
        );
        assert!(applied.result.is_ok());
        st
    }

    #[test]
    fn unknown_instances_are_not_disconnected() {
        let st = state_with_master();
        let m = &st.masters["m"];
        assert_eq!(master(1, m, None), ["master"]);
        let r: Addr = "10.0.0.2:6379".parse().unwrap();
        assert_eq!(replica(m, &r, None), ["slave"]);
    }

    #[test]
    fn seen_down_and_disconnected_in_sentinels_order() {
        let st = state_with_master();
        let m = &st.masters["m"];
        let mut info = InstanceInfo::new(m.addr.clone(), "m");
        info.sdown_since = Some(tokio::time::Instant::now());
        assert_eq!(
            master(1, m, Some(&info)),
            ["s_down", "master", "disconnected"]
        );
        let r: Addr = "10.0.0.2:6379".parse().unwrap();
        assert_eq!(
            replica(m, &r, Some(&info)),
            ["s_down", "slave", "disconnected"]
        );
    }
}
