//! Which master changes a `WatchMasters` stream sends, computed from applied state only, so
//! every node gives the same answer and a resumed stream misses nothing.
//!
//! Switches are ordered by the log index of their `FailoverDone` (commit order), then by
//! epoch (one entry may hold several switches, see `Command::Batch`); a client resumes with
//! the epoch of the last switch it received.

use std::collections::BTreeSet;

use crate::fsm::ClusterState;
use crate::pb::api::{master_change::Kind, MasterChange};

/// A resume point could not be honoured.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The epoch has not been reached yet.
    #[error("epoch {0} is newer than the current epoch {1}")]
    Future(u64, u64),
    /// The bounded history no longer reaches back that far.
    #[error(
        "failover history no longer reaches back to epoch {0}; restart the watch with from_epoch 0"
    )]
    Expired(u64),
}

/// A position in the stream of switches: (log index, epoch) of the last one sent. Several
/// switches may share an index (one batch entry), so the index alone is not enough.
pub type Cursor = (u64, u64);

/// The cursor of a watch that starts at `state` and wants only what comes after it.
pub fn cursor_at(state: &ClusterState) -> Cursor {
    (state.applied_index, u64::MAX)
}

fn watched(names: &BTreeSet<String>, name: &str) -> bool {
    names.is_empty() || names.contains(name)
}

/// The current address of every watched master (the start of a fresh watch).
pub fn current(state: &ClusterState, names: &BTreeSet<String>) -> Vec<MasterChange> {
    state
        .masters
        .values()
        .filter(|m| watched(names, &m.name))
        .map(|m| MasterChange {
            kind: Kind::Current.into(),
            name: m.name.clone(),
            old_host: String::new(),
            old_port: 0,
            host: m.addr.host.clone(),
            port: m.addr.port.into(),
            epoch: m.config_epoch,
            index: state.applied_index,
            switched_at_ms: 0,
        })
        .collect()
}

/// The position after which switches of the watched masters must be sent to a client
/// resuming from `from_epoch`.
pub fn resume_index(
    state: &ClusterState,
    names: &BTreeSet<String>,
    from_epoch: u64,
) -> Result<Cursor, ResumeError> {
    if from_epoch > state.current_epoch {
        return Err(ResumeError::Future(from_epoch, state.current_epoch));
    }
    let switches = || state.history.iter().filter(|r| r.promoted_index.is_some());
    if let Some(idx) = switches()
        .find(|r| r.epoch == from_epoch)
        .and_then(|r| r.promoted_index)
    {
        return Ok((idx, from_epoch));
    }
    // History is bounded per master: a watched master whose dropped records reach past the
    // client's epoch may have had a switch the client never saw.
    if state
        .masters
        .values()
        .any(|m| watched(names, &m.name) && m.history_dropped_epoch > from_epoch)
    {
        return Err(ResumeError::Expired(from_epoch));
    }
    // The client's epoch was not a switch (or predates every retained one): everything with
    // a higher epoch is new to it.
    Ok(switches()
        .filter(|r| r.epoch > from_epoch)
        .filter_map(|r| r.promoted_index)
        .min()
        .map_or(cursor_at(state), |i| (i - 1, u64::MAX)))
}

/// Switches of watched masters applied after position `after`, in commit order.
pub fn switches_after(
    state: &ClusterState,
    names: &BTreeSet<String>,
    after: Cursor,
) -> Vec<MasterChange> {
    let mut out: Vec<(Cursor, MasterChange)> = state
        .history
        .iter()
        .filter(|r| watched(names, &r.master))
        .filter_map(|r| {
            let idx = r.promoted_index?;
            if (idx, r.epoch) <= after {
                return None;
            }
            let to = r.candidate.as_ref()?;
            Some((
                (idx, r.epoch),
                MasterChange {
                    kind: Kind::Switch.into(),
                    name: r.master.clone(),
                    old_host: r.from.host.clone(),
                    old_port: r.from.port.into(),
                    host: to.host.clone(),
                    port: to.port.into(),
                    epoch: r.epoch,
                    index: idx,
                    switched_at_ms: r.promoted_at_ms.unwrap_or(0),
                },
            ))
        })
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{Command, FailoverReason, MasterSpec};

    fn apply(s: &mut ClusterState, cmd: Command) {
        let i = s.applied_index + 1;
        let r = s.apply(i, &cmd);
        assert!(r.result.is_ok(), "{cmd:?}: {:?}", r.result);
    }

    fn failover(s: &mut ClusterState, master: &str, epoch: u64, to: &str) {
        apply(
            s,
            Command::FailoverStart {
                master: master.into(),
                epoch,
                candidate: to.parse().unwrap(),
                reason: FailoverReason::Forced,
                leader: 1,
                at_ms: epoch,
            },
        );
    }

    fn done(s: &mut ClusterState, master: &str, epoch: u64, to: &str) {
        apply(
            s,
            Command::FailoverDone {
                master: master.into(),
                epoch,
                new_addr: to.parse().unwrap(),
                at_ms: epoch,
            },
        );
    }

    fn state() -> ClusterState {
        // At the newest format, as a cluster of this version runs (per-master history).
        let mut s = ClusterState {
            cluster_version: crate::fsm::SUPPORTED_VERSION,
            ..ClusterState::default()
        };
        for (n, a) in [("a", "h:1"), ("b", "h:2")] {
            apply(
                &mut s,
                Command::Monitor {
                    spec: MasterSpec {
                        down_after_ms: 1,
                        failover_timeout_ms: 1,
                        ..MasterSpec::new(n, a.parse().unwrap(), 1)
                    },
                },
            );
        }
        s
    }

    #[test]
    fn overlapping_failovers_are_sent_in_commit_order_and_resume_exactly() {
        let mut s = state();
        let all = BTreeSet::new();
        failover(&mut s, "a", 1, "h:11");
        failover(&mut s, "b", 2, "h:12");
        done(&mut s, "b", 2, "h:12"); // epoch 2 switches before epoch 1
        done(&mut s, "a", 1, "h:11");
        failover(&mut s, "a", 3, "h:1");
        done(&mut s, "a", 3, "h:1");
        let got: Vec<u64> = switches_after(&s, &all, (0, 0))
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [2, 1, 3]);
        // A client that saw epoch 2 missed 1 and 3, even though 1 < 2.
        let idx = resume_index(&s, &all, 2).unwrap();
        let got: Vec<u64> = switches_after(&s, &all, idx)
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [1, 3]);
        let idx = resume_index(&s, &all, 3).unwrap();
        assert!(switches_after(&s, &all, idx).is_empty());
        // Filtering by name.
        let only_b: BTreeSet<String> = ["b".to_string()].into();
        let got: Vec<u64> = switches_after(&s, &only_b, (0, 0))
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [2]);
        let cur = current(&s, &only_b);
        assert_eq!(cur.len(), 1);
        assert_eq!(
            (cur[0].host.as_str(), cur[0].port, cur[0].epoch),
            ("h", 12, 2)
        );
        assert_eq!(resume_index(&s, &all, 9), Err(ResumeError::Future(9, 3)));
    }

    /// Two switches committed in one batch entry share its index: a client that saw the
    /// first gets the second when it resumes, and one that saw both gets nothing again.
    #[test]
    fn switches_of_one_batch_entry_resume_exactly() {
        let mut s = state();
        let all = BTreeSet::new();
        failover(&mut s, "a", 1, "h:11");
        failover(&mut s, "b", 2, "h:12");
        let both = Command::Batch {
            commands: vec![
                Command::FailoverDone {
                    master: "b".into(),
                    epoch: 2,
                    new_addr: "h:12".parse().unwrap(),
                    at_ms: 2,
                },
                Command::FailoverDone {
                    master: "a".into(),
                    epoch: 1,
                    new_addr: "h:11".parse().unwrap(),
                    at_ms: 2,
                },
            ],
        };
        apply(&mut s, both);
        let sent = switches_after(&s, &all, (0, 0));
        let got: Vec<(u64, u64)> = sent.iter().map(|c| (c.index, c.epoch)).collect();
        assert_eq!(got, [(s.applied_index, 1), (s.applied_index, 2)]);
        for (seen, rest) in [(1, vec![2]), (2, vec![])] {
            let at = resume_index(&s, &all, seen).unwrap();
            let got: Vec<u64> = switches_after(&s, &all, at)
                .iter()
                .map(|c| c.epoch)
                .collect();
            assert_eq!(got, rest, "resumed after epoch {seen}");
        }
        // A stream that sent the first one and then stopped (its cursor) still sends the other.
        let got: Vec<u64> = switches_after(&s, &all, (sent[0].index, sent[0].epoch))
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [2]);
        assert!(switches_after(&s, &all, cursor_at(&s)).is_empty());
    }

    #[test]
    fn aborted_epochs_resume_from_the_next_switch() {
        let mut s = state();
        failover(&mut s, "a", 1, "h:11");
        apply(
            &mut s,
            Command::FailoverAbort {
                master: "a".into(),
                epoch: 1,
                why: "slave-timeout".into(),
                at_ms: 1,
            },
        );
        failover(&mut s, "a", 2, "h:11");
        done(&mut s, "a", 2, "h:11");
        let idx = resume_index(&s, &BTreeSet::new(), 1).unwrap();
        let got: Vec<u64> = switches_after(&s, &BTreeSet::new(), idx)
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [2]);
    }

    /// A master that fails over again and again must not push another master's switches out
    /// of the history: a watch of the quiet master resumes exactly.
    #[test]
    fn a_flapping_master_keeps_its_history_to_itself() {
        let mut s = state();
        failover(&mut s, "b", 1, "h:12");
        done(&mut s, "b", 1, "h:12");
        let to = ["h:11", "h:1"];
        for e in 2..(2 + 3 * crate::fsm::HISTORY_LIMIT as u64) {
            failover(&mut s, "a", e, to[(e % 2) as usize]);
            done(&mut s, "a", e, to[(e % 2) as usize]);
        }
        let only_b: BTreeSet<String> = ["b".to_string()].into();
        let got: Vec<u64> = switches_after(&s, &only_b, (0, 0))
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [1], "b's switch is still in the history");
        let idx = resume_index(&s, &only_b, 0).unwrap();
        let got: Vec<u64> = switches_after(&s, &only_b, idx)
            .iter()
            .map(|c| c.epoch)
            .collect();
        assert_eq!(got, [1]);
        // a keeps only its last HISTORY_LIMIT, and a watch of a from before those is refused.
        let a_records = s.history.iter().filter(|r| r.master == "a").count();
        assert_eq!(a_records, crate::fsm::HISTORY_LIMIT);
        let all = BTreeSet::new();
        assert_eq!(resume_index(&s, &all, 5), Err(ResumeError::Expired(5)));
        let only_a: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(resume_index(&s, &only_a, 5), Err(ResumeError::Expired(5)));
        let last = s.current_epoch;
        assert!(resume_index(&s, &only_a, last - 3).is_ok());
    }
}
