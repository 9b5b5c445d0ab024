//! Size limits of the replicated state.
//!
//! The whole state travels as one Raft snapshot, and a snapshot travels in one message on the
//! peer port (at most 32 MiB). Rather than chunking it, every part of the state is bounded so
//! that the largest state the commands can build stays well under that (the test
//! `worst_case_state_fits_one_peer_message` builds it):
//!
//! - at most [`MAX_MASTERS`] masters; names and hosts at most [`MAX_NAME_LEN`] bytes, ACL
//!   users too, passwords at most [`MAX_SECRET_LEN`];
//! - at most [`MAX_REPLICAS`] known replicas per master (more discovered ones are not recorded;
//!   a replica set that large is watched from the master's INFO anyway);
//! - at most [`super::HISTORY_LIMIT`] failover records per master, with abort reasons cut to
//!   [`MAX_REASON_LEN`] bytes;
//! - one observation per voter and master; member announcements with bounded fields.
//!
//! A command that would pass a limit is refused with a message that names it; nothing is
//! truncated silently except a free-text abort reason.
//!
//! # The limits are part of command format 2
//!
//! Whether a command passes a limit is decided where the entry is applied, so every node that
//! applies it must decide the same way: a node that refuses the 257th master while another
//! monitors it has diverged for good. Builds from before the limits (command format 1, which
//! announce no format) apply every such command. The state machine therefore enforces the
//! limits, and keeps the failover history per master, only once the committed cluster version
//! is at least [`BOUNDED_STATE_VERSION`] (format 2: every build that reads format 2 has them),
//! and behaves as format 1 did before that ([`Limits`]). The cluster version is itself a
//! committed value, so every node switches at the same entry. A cluster that still has a
//! format 1 member therefore runs with an unbounded state (as that member does) until the last
//! member is upgraded; a new cluster runs at format 1 only until its first leader has seen
//! every member's announcement (about one election timeout), and the config's masters are
//! checked against the limits when the config is loaded.

use super::state::Rejection;
use crate::model::Addr;

/// Masters monitored by one cluster.
pub const MAX_MASTERS: usize = 256;
/// Master names, hosts of addresses and ACL user names, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Passwords, in bytes.
pub const MAX_SECRET_LEN: usize = 512;
/// Known replicas per master.
pub const MAX_REPLICAS: usize = 32;
/// Free-text reasons kept in the failover history, in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// A node's run id (Sentinel's is 40 hex characters).
pub const MAX_RUN_ID_LEN: usize = 64;
/// Upper bound the limits above keep a snapshot under: half the peer port's message limit,
/// leaving room for the snapshot's metadata and for growth the limits do not foresee.
pub const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

/// The first command format whose state machine enforces these limits.
pub const BOUNDED_STATE_VERSION: u32 = 2;

/// Failover records kept in one shared list before [`BOUNDED_STATE_VERSION`] (format 1 kept
/// the last 100 of all masters together).
pub const LEGACY_HISTORY_LIMIT: usize = 100;

/// The limits in force at a cluster version: the ones above from [`BOUNDED_STATE_VERSION`] on,
/// none before (what a format 1 node decides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Enforced.
    pub on: bool,
}

impl Limits {
    pub(crate) fn at(cluster_version: u32) -> Limits {
        Limits {
            on: cluster_version >= BOUNDED_STATE_VERSION,
        }
    }

    /// `check` when the limits are in force, `Ok` otherwise.
    pub(crate) fn check(self, check: Result<(), Rejection>) -> Result<(), Rejection> {
        if self.on {
            check
        } else {
            Ok(())
        }
    }

    pub(crate) fn max_masters(self) -> usize {
        if self.on {
            MAX_MASTERS
        } else {
            usize::MAX
        }
    }

    pub(crate) fn max_replicas(self) -> usize {
        if self.on {
            MAX_REPLICAS
        } else {
            usize::MAX
        }
    }

    /// A free-text reason as it is kept in the history.
    pub(crate) fn reason(self, why: &str) -> String {
        if self.on {
            truncate(why, MAX_REASON_LEN)
        } else {
            why.to_string()
        }
    }
}

pub(crate) fn check_len(what: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::invalid(format!(
            "{what} is {} bytes long; the limit is {max}",
            value.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_addr(what: &str, a: &Addr) -> Result<(), Rejection> {
    check_len(&format!("{what} host"), &a.host, MAX_NAME_LEN)?;
    // Never part of a host name or IP literal; JSON would double them.
    if a.host.contains(['"', '\\']) {
        return Err(Rejection::invalid(format!(
            "{what} host contains a quote or a backslash"
        )));
    }
    Ok(())
}

/// Whether the state machine records this address (the monitor filters what it proposes).
pub fn addr_within_limits(a: &Addr) -> bool {
    check_addr("", a).is_ok()
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::fsm::command::{FailoverReason, MemberInfo, ObserveReason, ReconfStage};
    use crate::fsm::state::{
        ClusterState, FailoverRecord, FailoverRequestState, FailoverState, MasterState, Member,
        Observation, ReconfState,
    };
    use crate::fsm::{MasterSpec, HISTORY_LIMIT};

    /// Longest string of a kind: `"` doubles in JSON, so it is the worst character.
    fn worst(len: usize) -> String {
        "\"".repeat(len)
    }

    fn addr(i: usize) -> Addr {
        // Distinct hosts of the maximum length (quotes are refused in hosts).
        let tag = format!("{i:x}");
        let a = Addr::new(
            format!("{tag}{}", "h".repeat(MAX_NAME_LEN - tag.len())),
            65535,
        );
        let a = a.unwrap();
        assert!(check_addr("test", &a).is_ok());
        a
    }

    /// The largest state the limits allow (with 9 voters, more than any deployment runs)
    /// serializes under `MAX_STATE_BYTES`, itself half the peer port's message limit.
    #[test]
    fn worst_case_state_fits_one_peer_message() {
        const VOTERS: u64 = 9;
        let members = (1..=VOTERS)
            .map(|id| {
                let info = MemberInfo {
                    peer_addr: Some(worst(MAX_NAME_LEN + 8)),
                    sentinel_addr: Some(worst(MAX_NAME_LEN + 8)),
                    grpc_addr: Some(worst(MAX_NAME_LEN + 8)),
                    run_id: Some(worst(MAX_RUN_ID_LEN)),
                    command_version: Some(u32::MAX),
                };
                (id, Member { voter: true, info })
            })
            .collect();
        let mut state = ClusterState {
            applied_index: u64::MAX,
            current_epoch: u64::MAX,
            bootstrapped: true,
            members,
            clock_ms: u64::MAX,
            cluster_version: u32::MAX,
            ..ClusterState::default()
        };
        let mut n = 0;
        for k in 0..MAX_MASTERS {
            let name = format!("{k:x}{}", worst(MAX_NAME_LEN - 4));
            let spec = MasterSpec {
                auth_user: Some(worst(MAX_NAME_LEN)),
                auth_pass: Some(worst(MAX_SECRET_LEN)),
                down_after_ms: u64::MAX,
                failover_timeout_ms: u64::MAX,
                parallel_syncs: u32::MAX,
                ..MasterSpec::new(name.clone(), addr(n), u32::MAX)
            };
            n += 1;
            let mut m = MasterState::from_spec(&spec);
            m.monitored_addr = addr(n);
            n += 1;
            // Replicas, plus the old master a failover adds and an instance a fence adds.
            for _ in 0..MAX_REPLICAS + 2 {
                m.replicas.insert(addr(n));
                n += 1;
            }
            for v in 1..=VOTERS {
                let o = Observation {
                    down: true,
                    reason: ObserveReason::EmptyRestart,
                    at_ms: u64::MAX,
                    ignored: true,
                };
                m.observations.insert(v, o);
            }
            m.odown_since_ms = Some(u64::MAX);
            m.failover_request = Some(FailoverRequestState {
                reason: FailoverReason::Switchover,
                target: Some(addr(n)),
                at_ms: u64::MAX,
                index: u64::MAX,
            });
            m.failover = Some(FailoverState {
                epoch: u64::MAX,
                candidate: addr(n + 1),
                reason: FailoverReason::Switchover,
                leader: u64::MAX,
                started_at_ms: u64::MAX,
            });
            let replicas: BTreeMap<Addr, ReconfStage> = (0..=MAX_REPLICAS)
                .map(|i| (addr(n + i), ReconfStage::InProgress))
                .collect();
            m.reconf = Some(ReconfState {
                epoch: u64::MAX,
                started_at_ms: u64::MAX,
                old_addr: addr(n),
                replicas,
            });
            n += MAX_REPLICAS + 1;
            m.recent_failovers_ms = vec![u64::MAX; 64];
            m.history_dropped_epoch = u64::MAX;
            for _ in 0..HISTORY_LIMIT {
                state.history.push_back(FailoverRecord {
                    master: name.clone(),
                    epoch: u64::MAX,
                    reason: FailoverReason::Switchover,
                    from: addr(n),
                    candidate: Some(addr(n + 1)),
                    leader: u64::MAX,
                    started_at_ms: u64::MAX,
                    promoted_at_ms: Some(u64::MAX),
                    promoted_index: Some(u64::MAX),
                    ended_at_ms: Some(u64::MAX),
                    outcome: format!("aborted: {}", worst(MAX_REASON_LEN)),
                });
            }
            state.masters.insert(name, m);
        }
        for k in 0..crate::fsm::MAX_SYNC_HOLDS {
            let rec = crate::fsm::SyncHoldRecord {
                master: worst(MAX_NAME_LEN),
                owner: u64::MAX,
                diskless_sync: worst(20),
                diskless_sync_delay: worst(20),
                since_ms: u64::MAX,
                auth_user: Some(worst(MAX_NAME_LEN)),
                auth_pass: Some(worst(MAX_SECRET_LEN)),
                tls: true,
            };
            state.sync_holds.insert(addr(n + k), rec);
        }
        let bytes = state.to_bytes().len();
        eprintln!("worst-case snapshot: {bytes} bytes");
        assert!(
            bytes < MAX_STATE_BYTES,
            "worst-case snapshot is {bytes} bytes, over {MAX_STATE_BYTES}"
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("ééé", 4), "éé");
    }
}
