//! The end of a hold on full syncs, by whichever node leads: the node that set the hold may
//! be gone (stopped, crashed, or its master removed), and the instance's own
//! `repl-diskless-sync*` settings are committed (`ClusterState::sync_holds`), so the leader
//! puts them back once the hold has no more purpose.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::probe::{config_get_sync, config_set_sync, HOLD_DELAY_SECS, ORPHAN_HOLD_GRACE};
use crate::clock::wall_ms;
use crate::consensus::RaftHandle;
use crate::fsm::{ClusterState, Command, SyncHoldRecord};
use crate::instance::link::{Auth, Connector};
use crate::model::Addr;

/// Connect, and each command, to a held instance.
const TIMEOUT: Duration = Duration::from_secs(1);
/// How long a majority may take to confirm the leader before it restores anything.
const QUORUM_TIMEOUT: Duration = Duration::from_millis(500);

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
        let mut link = match connector.connect(addr, &auth, TIMEOUT).await {
            Ok(l) => l,
            Err(e) => {
                debug!(instance = %addr, error = %e, "cannot reach a held instance yet");
                continue;
            }
        };
        let mut c = redis::cmd("INFO");
        c.arg("replication");
        let Ok(text) = link.text(&c, "INFO replication", TIMEOUT).await else {
            continue;
        };
        let is_replica = text.lines().any(|l| l.trim() == "role:slave");
        let Some(why) = hold_over(&state, addr, rec, is_replica, wall_ms()) else {
            continue;
        };
        if let Err(e) = raft.read_index(QUORUM_TIMEOUT).await {
            debug!(error = %e, "not ending a hold: no majority confirmed");
            return;
        }
        let current = match config_get_sync(&mut link, TIMEOUT).await {
            Ok(v) => v,
            Err(e) => {
                warn!(instance = %addr, error = %e, "cannot read the sync settings of a held instance");
                continue;
            }
        };
        // Only the hold's own delay is replaced: any other value is the operator's (or the
        // owner restored it already).
        if current.1 == HOLD_DELAY_SECS.to_string() {
            let original = (rec.diskless_sync.as_str(), rec.diskless_sync_delay.as_str());
            if let Err(e) = config_set_sync(&mut link, original, true, TIMEOUT).await {
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
}
