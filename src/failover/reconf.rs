//! The plan of one pass of a reconfiguration (after the promotion): which replica stages to
//! commit, which replicas to repoint to the new master, and when to end. Pure: the
//! committed state, this node's view and the job's own memory (when it last sent to whom)
//! in, a list of [`Step`]s out. The executor only carries the steps out, in order.
//!
//! Sentinel's rules (`sentinelFailoverReconfNextSlave`, `sentinelFailoverDetectEnd`): the
//! old master first and always (while it may take writes it is the split-brain risk); the
//! other replicas at most `parallel-syncs` at a time; a replica that reports the new master
//! is in progress, one whose link is up is done; after `failover-timeout` everything left
//! gets a last `REPLICAOF` and the failover ends.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::select::{self, follows, healthy};
use crate::fsm::{MasterState, ReconfStage, ReconfState};
use crate::model::Addr;
use crate::view::MonitorView;

/// A repointed replica that does not follow yet gets `REPLICAOF` again after this.
pub(super) const RECONF_RESEND: Duration = Duration::from_secs(2);

/// What one pass looks at.
pub(super) struct Pass<'a> {
    /// The committed master: its address is the promoted replica.
    pub master: &'a MasterState,
    /// The committed reconfiguration of the job's epoch.
    pub reconf: &'a ReconfState,
    /// This node's view of the instances.
    pub view: &'a MonitorView,
    /// Now, on the view's clock.
    pub now: Instant,
    /// The committed state calls the new master objectively down.
    pub new_master_odown: bool,
    /// `failover_timeout` has passed since this leader took the job over.
    pub timed_out: bool,
    /// When this job last sent `REPLICAOF` to each replica.
    pub sent_at: &'a BTreeMap<Addr, Instant>,
}

/// One thing to do, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Commit the replica's stage. The outcome does not matter: the next pass reads the
    /// committed state again.
    Commit {
        /// The replica.
        replica: Addr,
        /// Its new stage.
        stage: ReconfStage,
    },
    /// Send `REPLICAOF new-master` (and lift a switchover's write pause on the old master).
    Repoint {
        /// The replica.
        replica: Addr,
        /// It is the old master.
        is_old: bool,
        /// What must be committed first.
        mark: Mark,
    },
    /// Commit the end of the reconfiguration; nothing after it.
    End(EndReason),
}

/// Whether a [`Step::Repoint`] commits `Sent` first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mark {
    /// Nothing: a resend to a replica already committed as sent, or the last try after the
    /// timeout.
    None,
    /// Commit `Sent` first and send only if that commits. Counts as in progress for
    /// `parallel-syncs` (the old master too, though it is sent regardless).
    Sent,
    /// Over `parallel-syncs` as planned: like [`Mark::Sent`], but only if at least this many
    /// `Sent` commits counted before it in this pass failed, each leaving its place free
    /// (see [`Slots`]). Sentinel moves on to the next replica when a send fails, too.
    SentIfFreed(usize),
}

/// Why the reconfiguration ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndReason {
    /// The new master is objectively down: stop waiting on it so a new failover can start.
    NewMasterDown,
    /// Every replica this node knows of is done (or down and never touched).
    AllDone,
    /// `failover_timeout` passed.
    TimedOut,
}

impl EndReason {
    /// Committed as `FailoverEnd { timed_out }`.
    pub(super) fn timed_out(self) -> bool {
        self != EndReason::AllDone
    }
}

/// What the view says of one replica, read once per pass.
struct Seen {
    reachable: bool,
    following: bool,
    link_up: bool,
}

/// Plans one pass. Without an [`Step::End`] the job waits for the view to change and plans
/// again.
pub(super) fn plan_reconf(p: &Pass<'_>) -> Vec<Step> {
    if p.new_master_odown {
        return vec![Step::End(EndReason::NewMasterDown)];
    }
    let m = p.master;
    let r = p.reconf;
    let mut targets: Vec<Addr> = select::replicas_of(m, p.view).into_iter().collect();
    // The old master first: while it may still take writes, it is the split-brain risk.
    targets.sort_by_key(|a| *a != r.old_addr);
    let mut in_flight = r
        .replicas
        .values()
        .filter(|s| matches!(s, ReconfStage::Sent | ReconfStage::InProgress))
        .count();
    let mut all_done = true;
    let mut steps = Vec::new();
    for t in &targets {
        let stage = r.replicas.get(t).copied();
        if matches!(stage, Some(ReconfStage::Done | ReconfStage::TimedOut)) {
            continue;
        }
        let info = p.view.get(t);
        let following = info.is_some_and(|i| follows(i, &m.addr));
        let seen = Seen {
            reachable: info.is_some_and(|i| healthy(i, p.now)),
            following,
            link_up: following && info.is_some_and(|i| i.master_link_up),
        };
        let next = if seen.link_up {
            Some(ReconfStage::Done)
        } else if seen.following && stage != Some(ReconfStage::InProgress) {
            Some(ReconfStage::InProgress)
        } else {
            None
        };
        if let Some(next) = next {
            if stage.is_none() && next == ReconfStage::InProgress {
                in_flight += 1;
            }
            if next == ReconfStage::Done && stage.is_some() {
                in_flight = in_flight.saturating_sub(1);
            }
            all_done &= next == ReconfStage::Done;
            steps.push(Step::Commit {
                replica: t.clone(),
                stage: next,
            });
            continue;
        }
        if seen.following {
            // In progress, its link not up yet.
            all_done = false;
            continue;
        }
        if stage.is_none() && !seen.reachable {
            // Down or unknown and never touched: fencing repoints it when it comes back.
            continue;
        }
        all_done = false;
        if p.timed_out {
            continue;
        }
        let is_old = *t == r.old_addr;
        let mark = match stage {
            None if is_old || in_flight < m.parallel_syncs as usize => {
                in_flight += 1;
                Mark::Sent
            }
            None => Mark::SentIfFreed(in_flight + 1 - m.parallel_syncs as usize),
            Some(_) => {
                let due = p
                    .sent_at
                    .get(t)
                    .is_none_or(|at| p.now.saturating_duration_since(*at) > RECONF_RESEND);
                if !seen.reachable || !due {
                    continue;
                }
                Mark::None
            }
        };
        steps.push(Step::Repoint {
            replica: t.clone(),
            is_old,
            mark,
        });
    }
    if all_done {
        steps.push(Step::End(EndReason::AllDone));
    } else if p.timed_out {
        last_tries(r, &targets, &mut steps);
    }
    steps
}

/// After the timeout: a last `REPLICAOF` to every replica not finished, best effort as
/// Sentinel does, each then committed as timed out, and the end. The stages are those the
/// pass started from.
fn last_tries(r: &ReconfState, targets: &[Addr], steps: &mut Vec<Step>) {
    for t in targets {
        let stage = r.replicas.get(t).copied();
        if matches!(stage, Some(ReconfStage::Done | ReconfStage::TimedOut)) {
            continue;
        }
        steps.push(Step::Repoint {
            replica: t.clone(),
            is_old: *t == r.old_addr,
            mark: Mark::None,
        });
        steps.push(Step::Commit {
            replica: t.clone(),
            stage: ReconfStage::TimedOut,
        });
    }
    steps.push(Step::End(EndReason::TimedOut));
}

/// The executor's count of places in `parallel-syncs` left free by `Sent` commits that
/// failed during the pass (the plan counted them as taken), for [`Mark::SentIfFreed`].
#[derive(Debug, Default)]
pub(super) struct Slots {
    freed: usize,
}

impl Slots {
    /// Whether a repoint marked `mark` is tried at all.
    pub(super) fn admits(&self, mark: Mark) -> bool {
        match mark {
            Mark::SentIfFreed(n) => self.freed >= n,
            Mark::None | Mark::Sent => true,
        }
    }

    /// Records the outcome of the `Sent` commit of an admitted repoint.
    pub(super) fn committed(&mut self, mark: Mark, ok: bool) {
        match (mark, ok) {
            (Mark::Sent, false) => self.freed += 1,
            (Mark::SentIfFreed(_), true) => self.freed = self.freed.saturating_sub(1),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::fsm::{ClusterState, Command, MasterSpec};
    use crate::view::{InstanceInfo, ReportedRole};

    const OLD: u16 = 7001;
    const NEW: u16 = 7002;

    fn addr(port: u16) -> Addr {
        Addr::new("127.0.0.1", port).unwrap()
    }

    /// What this node sees of one instance.
    #[derive(Clone, Copy)]
    enum Obs {
        /// A healthy replica of the given port, its link up or not.
        Follows(u16, bool),
        /// Healthy and reporting itself master.
        Master,
        /// Known to the view, not connected.
        Unreachable,
        /// Not in the view at all (only committed as a replica).
        Unwatched,
    }

    /// One replica of a row: port, what is seen, committed stage, sent by this job just now.
    type Target = (u16, Obs, Option<ReconfStage>, bool);

    struct Row {
        name: &'static str,
        targets: Vec<Target>,
        parallel_syncs: u32,
        timed_out: bool,
        odown: bool,
        expect: Vec<Step>,
    }

    fn row(name: &'static str, targets: Vec<Target>, expect: Vec<Step>) -> Row {
        Row {
            name,
            targets,
            parallel_syncs: 1,
            timed_out: false,
            odown: false,
            expect,
        }
    }

    fn commit(port: u16, stage: ReconfStage) -> Step {
        Step::Commit {
            replica: addr(port),
            stage,
        }
    }

    fn repoint(port: u16, mark: Mark) -> Step {
        Step::Repoint {
            replica: addr(port),
            is_old: port == OLD,
            mark,
        }
    }

    fn instance(port: u16, obs: Obs, now: Instant) -> Option<InstanceInfo> {
        let mut i = InstanceInfo::new(addr(port), "m");
        i.connected = true;
        i.info_refresh = Some(now);
        i.last_ok_ping_reply = Some(now);
        match obs {
            Obs::Follows(master, link_up) => {
                i.role = Some(ReportedRole::Replica);
                i.master_host = Some("127.0.0.1".into());
                i.master_port = Some(master);
                i.master_link_up = link_up;
            }
            Obs::Master => i.role = Some(ReportedRole::Master),
            Obs::Unreachable => {
                i.connected = false;
                i.sdown_since = Some(now);
            }
            Obs::Unwatched => return None,
        }
        Some(i)
    }

    fn run(row: &Row) -> Vec<Step> {
        let now = Instant::now();
        let mut s = ClusterState::default();
        let spec = MasterSpec {
            parallel_syncs: row.parallel_syncs,
            ..MasterSpec::new("m", addr(OLD), 2)
        };
        assert!(s.apply(1, &Command::Monitor { spec }).result.is_ok());
        let mut m = s.masters["m"].clone();
        // After the promotion: the promoted replica is the master, the old one a replica.
        m.addr = addr(NEW);
        m.replicas = row
            .targets
            .iter()
            .map(|t| addr(t.0))
            .collect::<BTreeSet<_>>();
        m.replicas.insert(addr(NEW));
        let reconf = ReconfState {
            epoch: 1,
            started_at_ms: 0,
            old_addr: addr(OLD),
            replicas: row
                .targets
                .iter()
                .filter_map(|t| t.2.map(|s| (addr(t.0), s)))
                .collect(),
        };
        let mut view = MonitorView::default();
        let promoted = instance(NEW, Obs::Master, now);
        for i in row
            .targets
            .iter()
            .filter_map(|t| instance(t.0, t.1, now))
            .chain(promoted)
        {
            view.instances.insert(i.addr.clone(), i);
        }
        let sent_at = row
            .targets
            .iter()
            .filter(|t| t.3)
            .map(|t| (addr(t.0), now - Duration::from_millis(100)))
            .collect();
        plan_reconf(&Pass {
            master: &m,
            reconf: &reconf,
            view: &view,
            now,
            new_master_odown: row.odown,
            timed_out: row.timed_out,
            sent_at: &sent_at,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_pass_per_situation() {
        use EndReason as E;
        use Mark as M;
        use Obs::*;
        use ReconfStage::*;
        let rows = vec![
            row(
                "old master still master: repointed first, Sent committed before",
                vec![(OLD, Master, None, false)],
                vec![repoint(OLD, M::Sent)],
            ),
            row(
                "old master comes first even when it sorts last",
                vec![
                    (7000, Follows(OLD, true), None, false),
                    (OLD, Master, None, false),
                ],
                vec![repoint(OLD, M::Sent), repoint(7000, M::SentIfFreed(1))],
            ),
            row(
                "the old master is sent past parallel-syncs (and takes a place)",
                vec![
                    (OLD, Master, None, false),
                    (7003, Follows(NEW, false), Some(Sent), true),
                    (7004, Follows(OLD, true), None, false),
                ],
                vec![
                    repoint(OLD, M::Sent),
                    commit(7003, InProgress),
                    repoint(7004, M::SentIfFreed(2)),
                ],
            ),
            row(
                "replica already following the new master with its link up: done at once",
                vec![(7003, Follows(NEW, true), None, false)],
                vec![commit(7003, Done), Step::End(E::AllDone)],
            ),
            row(
                "replica following the new master, link down: in progress, then wait",
                vec![(7003, Follows(NEW, false), None, false)],
                vec![commit(7003, InProgress)],
            ),
            row(
                "in progress and still syncing: nothing to do, not done",
                vec![(7003, Follows(NEW, false), Some(InProgress), false)],
                vec![],
            ),
            row(
                "sent, now in sync: done, and its place is free for the next",
                vec![
                    (7003, Follows(NEW, true), Some(Sent), true),
                    (7004, Follows(OLD, true), None, false),
                ],
                vec![commit(7003, Done), repoint(7004, M::Sent)],
            ),
            row(
                "replica following the old master: repointed",
                vec![(7003, Follows(OLD, true), None, false)],
                vec![repoint(7003, M::Sent)],
            ),
            row(
                "replica of a different master: repointed",
                vec![(7003, Follows(9999, true), None, false)],
                vec![repoint(7003, M::Sent)],
            ),
            row(
                "parallel-syncs 1: the second waits unless the first's commit fails",
                vec![
                    (7003, Follows(OLD, true), None, false),
                    (7004, Follows(OLD, true), None, false),
                ],
                vec![repoint(7003, M::Sent), repoint(7004, M::SentIfFreed(1))],
            ),
            Row {
                parallel_syncs: 2,
                ..row(
                    "parallel-syncs 2: two at once",
                    vec![
                        (7003, Follows(OLD, true), None, false),
                        (7004, Follows(OLD, true), None, false),
                        (7005, Follows(OLD, true), None, false),
                    ],
                    vec![
                        repoint(7003, M::Sent),
                        repoint(7004, M::Sent),
                        repoint(7005, M::SentIfFreed(1)),
                    ],
                )
            },
            row(
                "unreachable and never touched: left to fencing, and not in the way of the end",
                vec![
                    (7003, Unreachable, None, false),
                    (7004, Follows(NEW, true), Some(InProgress), false),
                ],
                vec![commit(7004, Done), Step::End(E::AllDone)],
            ),
            row(
                "not in the view, only committed: as unreachable",
                vec![(7003, Unwatched, None, false)],
                vec![Step::End(E::AllDone)],
            ),
            row(
                "sent, then unreachable: no resend, not done",
                vec![(7003, Unreachable, Some(Sent), false)],
                vec![],
            ),
            row(
                "sent a moment ago and not following yet: no resend before RECONF_RESEND",
                vec![(7003, Follows(OLD, true), Some(Sent), true)],
                vec![],
            ),
            row(
                "sent by an earlier leader (or long ago): sent again, nothing to commit",
                vec![(7003, Follows(OLD, true), Some(Sent), false)],
                vec![repoint(7003, M::None)],
            ),
            row(
                "in progress, then it left the new master: sent again",
                vec![(7003, Follows(9999, true), Some(InProgress), false)],
                vec![repoint(7003, M::None)],
            ),
            row(
                "done and timed-out replicas are finished, whatever they report now",
                vec![
                    (7003, Follows(OLD, true), Some(Done), false),
                    (7004, Unreachable, Some(TimedOut), false),
                ],
                vec![Step::End(E::AllDone)],
            ),
            row(
                "nothing but the promoted one: it is never a target",
                vec![],
                vec![Step::End(E::AllDone)],
            ),
            Row {
                timed_out: true,
                ..row(
                    "timed out: stages still committed, then a last REPLICAOF to each one left",
                    vec![
                        (OLD, Unreachable, Some(Sent), false),
                        (7003, Follows(NEW, true), Some(Sent), true),
                        (7004, Follows(OLD, true), None, false),
                        (7005, Follows(NEW, true), Some(Done), false),
                        (7006, Unreachable, None, false),
                    ],
                    vec![
                        commit(7003, Done),
                        repoint(OLD, M::None),
                        commit(OLD, TimedOut),
                        repoint(7003, M::None),
                        commit(7003, TimedOut),
                        repoint(7004, M::None),
                        commit(7004, TimedOut),
                        repoint(7006, M::None),
                        commit(7006, TimedOut),
                        Step::End(E::TimedOut),
                    ],
                )
            },
            Row {
                timed_out: true,
                ..row(
                    "timed out but everything is done: a normal end",
                    vec![(7003, Follows(NEW, true), Some(InProgress), false)],
                    vec![commit(7003, Done), Step::End(E::AllDone)],
                )
            },
            Row {
                odown: true,
                ..row(
                    "new master objectively down: end at once",
                    vec![(OLD, Master, None, false)],
                    vec![Step::End(E::NewMasterDown)],
                )
            },
        ];
        for r in &rows {
            assert_eq!(run(r), r.expect, "{}", r.name);
        }
    }

    /// Replays the executor's admission over the planned marks with the given outcomes of
    /// the `Sent` commits (in order); returns the replicas sent to.
    fn admitted(marks: &[(u16, Mark)], outcomes: &[bool]) -> Vec<u16> {
        let mut slots = Slots::default();
        let mut outcomes = outcomes.iter();
        let mut sent = Vec::new();
        for &(port, mark) in marks {
            if !slots.admits(mark) {
                continue;
            }
            if mark != Mark::None {
                let ok = *outcomes.next().expect("an outcome per commit");
                slots.committed(mark, ok);
                if !ok {
                    continue;
                }
            }
            sent.push(port);
        }
        sent
    }

    #[test]
    fn a_failed_sent_commit_leaves_its_place_to_the_next_replica() {
        use Mark as M;
        // parallel-syncs 1, old master first, then three replicas waiting for a place.
        let marks = [
            (OLD, M::Sent),
            (1, M::SentIfFreed(1)),
            (2, M::SentIfFreed(1)),
            (3, M::SentIfFreed(1)),
        ];
        assert_eq!(admitted(&marks, &[true]), vec![OLD]);
        // The old master's commit fails: the first waiting replica takes its place.
        assert_eq!(admitted(&marks, &[false, true]), vec![1]);
        // And when that one fails too, the next.
        assert_eq!(admitted(&marks, &[false, false, true]), vec![2]);
        // Two places taken beyond the limit need two failures.
        let marks = [
            (1, M::Sent),
            (2, M::Sent),
            (3, M::SentIfFreed(2)),
            (4, M::SentIfFreed(1)),
        ];
        assert_eq!(admitted(&marks, &[false, true, true]), vec![2, 4]);
        assert_eq!(admitted(&marks, &[false, false, true, false]), vec![3]);
        // Resends commit nothing and are always tried.
        assert_eq!(admitted(&[(5, M::None)], &[]), vec![5]);
    }
}
