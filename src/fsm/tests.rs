//! Unit tests of the state machine: every command, ODOWN at exactly `quorum`, snapshots,
//! determinism, epochs.

use std::collections::BTreeSet;

use super::*;
use crate::model::Addr;

fn addr(s: &str) -> Addr {
    s.parse().unwrap()
}

fn spec(name: &str, a: &str, quorum: u32) -> MasterSpec {
    MasterSpec {
        down_after_ms: 1000,
        failover_timeout_ms: 10_000,
        ..MasterSpec::new(name, addr(a), quorum)
    }
}

/// A state with voters 1..=3 and `mymaster` at 10.0.0.1:6379, quorum 2, at the newest
/// command format (as a cluster of this version runs).
fn base() -> (ClusterState, u64) {
    base_at(SUPPORTED_VERSION)
}

/// [`base`] at a given committed cluster version.
fn base_at(version: u32) -> (ClusterState, u64) {
    let mut s = ClusterState::with_voters((1..=3).map(|i| (i, Some(format!("n{i}:7701")))));
    s.cluster_version = version;
    let mut idx = 5;
    s.applied_index = idx;
    idx += 1;
    let r = s.apply(
        idx,
        &Command::Bootstrap {
            masters: vec![spec("mymaster", "10.0.0.1:6379", 2)],
        },
    );
    assert!(r.result.is_ok());
    (s, idx)
}

struct Fixture {
    s: ClusterState,
    idx: u64,
}

/// `node`'s observation of `mymaster` at `addr`, stamped `at_ms`.
fn observe_cmd(addr: Addr, node: u64, down: bool, at_ms: u64) -> Command {
    Command::Observe {
        node,
        master: "mymaster".into(),
        addr,
        down,
        reason: if down {
            ObserveReason::NoReply
        } else {
            ObserveReason::Ok
        },
        at_ms,
    }
}
impl Fixture {
    fn new() -> Self {
        let (s, idx) = base();
        Fixture { s, idx }
    }
    fn apply(&mut self, cmd: Command) -> Applied {
        self.idx += 1;
        self.s.apply(self.idx, &cmd)
    }
    fn ok(&mut self, cmd: Command) -> Vec<Event> {
        let a = self.apply(cmd.clone());
        assert!(a.result.is_ok(), "{cmd:?} rejected: {:?}", a.result);
        a.events
    }
    fn err(&mut self, cmd: Command) -> Rejection {
        let before = self.s.clone();
        let a = self.apply(cmd.clone());
        let rej = a.result.expect_err(&format!("{cmd:?} should be rejected"));
        assert!(a.events.is_empty());
        // Nothing but the applied index changed.
        let mut after = self.s.clone();
        after.applied_index = before.applied_index;
        assert_eq!(after, before, "rejected {cmd:?} changed state");
        rej
    }
    fn observe(&mut self, node: u64, down: bool) -> Applied {
        let at = 1000 + self.idx;
        self.observe_at(node, down, at)
    }
    fn observe_at(&mut self, node: u64, down: bool, at_ms: u64) -> Applied {
        let a = self.s.masters["mymaster"].addr.clone();
        self.apply(observe_cmd(a, node, down, at_ms))
    }
    fn m(&self) -> &MasterState {
        &self.s.masters["mymaster"]
    }
    fn kinds(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.kind.as_str()).collect()
    }
    fn start(&mut self, epoch: u64, candidate: &str, reason: FailoverReason) -> Applied {
        self.apply(Command::FailoverStart {
            master: "mymaster".into(),
            epoch,
            candidate: addr(candidate),
            reason,
            leader: 1,
            at_ms: 5000 + self.idx,
        })
    }
}

#[test]
fn bootstrap_applies_once() {
    let mut f = Fixture::new();
    assert!(f.s.bootstrapped);
    let ev = f.ok(Command::Bootstrap {
        masters: vec![spec("other", "10.0.0.9:1", 1)],
    });
    assert!(ev.is_empty());
    assert!(!f.s.masters.contains_key("other"));
}

#[test]
fn monitor_duplicate_and_validation() {
    let mut f = Fixture::new();
    let ev = f.ok(Command::Monitor {
        spec: spec("m2", "10.0.0.2:6379", 2),
    });
    assert_eq!(ev[0].kind, "+monitor");
    assert_eq!(ev[0].payload, "master m2 10.0.0.2 6379 quorum 2");
    // Identical MONITOR is accepted, so a setup script can be sent to every node.
    assert!(f
        .ok(Command::Monitor {
            spec: spec("m2", "10.0.0.2:6379", 2)
        })
        .is_empty());
    let rej = f.err(Command::Monitor {
        spec: spec("m2", "10.0.0.3:6379", 2),
    });
    assert_eq!(rej.message, "Duplicate master name.");
    let rej = f.err(Command::Monitor {
        spec: spec("m3", "10.0.0.3:6379", 0),
    });
    assert_eq!(rej.message, "Quorum must be 1 or greater.");
}

#[test]
fn remove_and_unknown_master() {
    let mut f = Fixture::new();
    let ev = f.ok(Command::Remove {
        name: "mymaster".into(),
    });
    assert_eq!(Fixture::kinds(&ev), ["-monitor"]);
    let rej = f.err(Command::Remove {
        name: "mymaster".into(),
    });
    assert_eq!(rej.kind, RejectKind::NotFound);
    assert_eq!(rej.message, "No such master with that name");
}

#[test]
fn set_is_validated_as_a_whole() {
    let mut f = Fixture::new();
    let ev = f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![
            ("down-after-milliseconds".into(), "2500".into()),
            ("auth-pass".into(), "secret".into()),
            ("QUORUM".into(), "3".into()),
        ],
    });
    assert_eq!(f.m().down_after_ms, 2500);
    assert_eq!(f.m().auth_pass.as_deref(), Some("secret"));
    assert_eq!(f.m().quorum, 3);
    assert_eq!(
        ev[1].payload,
        "master mymaster 10.0.0.1 6379 auth-pass ******"
    );
    let rej = f.err(Command::Set {
        name: "mymaster".into(),
        options: vec![
            ("failover-timeout".into(), "5".into()),
            ("parallel-syncs".into(), "zero".into()),
        ],
    });
    assert_eq!(
        rej.message,
        "Invalid argument 'zero' for SENTINEL SET 'parallel-syncs'"
    );
    assert_eq!(
        f.m().failover_timeout_ms,
        10_000,
        "earlier option must not stick"
    );
    let rej = f.err(Command::Set {
        name: "mymaster".into(),
        options: vec![("bogus".into(), "1".into())],
    });
    assert_eq!(
        rej.message,
        "Unknown option or number of arguments for SENTINEL SET 'bogus'"
    );
    f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("auth-pass".into(), "".into())],
    });
    assert_eq!(f.m().auth_pass, None);
}

#[test]
fn odown_at_exactly_quorum() {
    let mut f = Fixture::new();
    let a = f.observe(1, true);
    assert_eq!(Fixture::kinds(&a.events), ["+sdown"]);
    assert_eq!(a.events[0].node, Some(1));
    assert!(!f.m().is_odown(), "1 of quorum 2 is not ODOWN");
    let a = f.observe(2, true);
    assert_eq!(Fixture::kinds(&a.events), ["+sdown", "+odown"]);
    assert_eq!(
        a.events[1].payload,
        "master mymaster 10.0.0.1 6379 #quorum 2/2"
    );
    assert!(f.m().is_odown());
    // A repeated observation changes nothing.
    assert!(f.observe(2, true).events.is_empty());
    let a = f.observe(3, true);
    assert_eq!(Fixture::kinds(&a.events), ["+sdown"]);
    let a = f.observe(1, false);
    assert_eq!(Fixture::kinds(&a.events), ["-sdown"], "still 2 of 2");
    let a = f.observe(2, false);
    assert_eq!(Fixture::kinds(&a.events), ["-sdown", "-odown"]);
    assert!(!f.m().is_odown());
}

#[test]
fn observations_from_non_members_and_old_addresses_are_refused() {
    let mut f = Fixture::new();
    let rej = f.err(Command::Observe {
        node: 9,
        master: "mymaster".into(),
        addr: addr("10.0.0.1:6379"),
        down: true,
        reason: ObserveReason::NoReply,
        at_ms: 1,
    });
    assert_eq!(rej.kind, RejectKind::Precondition);
    f.err(Command::Observe {
        node: 1,
        master: "mymaster".into(),
        addr: addr("10.0.0.7:6379"),
        down: true,
        reason: ObserveReason::NoReply,
        at_ms: 1,
    });
}

#[test]
fn quorum_change_reevaluates_odown() {
    let mut f = Fixture::new();
    f.observe(1, true);
    let ev = f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("quorum".into(), "1".into())],
    });
    assert_eq!(Fixture::kinds(&ev), ["+set", "+odown"]);
}

#[test]
fn full_failover_cycle() {
    let mut f = Fixture::new();
    f.ok(Command::Replicas {
        master: "mymaster".into(),
        replicas: vec![
            addr("10.0.0.2:6379"),
            addr("10.0.0.3:6379"),
            addr("10.0.0.1:6379"),
        ],
    });
    assert_eq!(
        f.m().replicas.len(),
        2,
        "the master itself is never its replica"
    );
    // Automatic failover needs ODOWN.
    let rej = f
        .start(1, "10.0.0.2:6379", FailoverReason::Odown)
        .result
        .unwrap_err();
    assert!(rej.message.contains("not objectively down"));
    f.observe(1, true);
    f.observe(2, true);
    let a = f.start(1, "10.0.0.2:6379", FailoverReason::Odown);
    assert!(a.result.is_ok());
    assert_eq!(
        Fixture::kinds(&a.events),
        [
            "+new-epoch",
            "+try-failover",
            "+elected-leader",
            "+failover-state-select-slave",
            "+selected-slave",
            "+failover-state-send-slaveof-noone"
        ]
    );
    assert_eq!(a.events[0].payload, "1");
    assert_eq!(
        a.events[4].payload,
        "slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379"
    );
    assert_eq!(f.s.current_epoch, 1);
    // A second start while one runs is refused, as is a stale epoch.
    let rej = f
        .start(2, "10.0.0.3:6379", FailoverReason::Forced)
        .result
        .unwrap_err();
    assert_eq!(rej.message, "INPROG Failover already in progress");
    // Done must match epoch and candidate.
    f.err(Command::FailoverDone {
        master: "mymaster".into(),
        epoch: 1,
        new_addr: addr("10.0.0.3:6379"),
        at_ms: 1,
    });
    let ev = f.ok(Command::FailoverDone {
        master: "mymaster".into(),
        epoch: 1,
        new_addr: addr("10.0.0.2:6379"),
        at_ms: 9000,
    });
    let kinds = Fixture::kinds(&ev);
    assert_eq!(
        &kinds[..3],
        [
            "+promoted-slave",
            "+failover-state-reconf-slaves",
            "+switch-master"
        ]
    );
    assert_eq!(ev[2].payload, "mymaster 10.0.0.1 6379 10.0.0.2 6379");
    assert_eq!(f.m().addr, addr("10.0.0.2:6379"));
    assert_eq!(f.m().config_epoch, 1);
    assert!(
        f.m().replicas.contains(&addr("10.0.0.1:6379")),
        "old master becomes a replica"
    );
    assert!(!f.m().replicas.contains(&addr("10.0.0.2:6379")));
    assert!(f.m().observations.is_empty() && !f.m().is_odown());
    // Observations about the old address are stale now.
    f.err(Command::Observe {
        node: 1,
        master: "mymaster".into(),
        addr: addr("10.0.0.1:6379"),
        down: true,
        reason: ObserveReason::NoReply,
        at_ms: 1,
    });
    let ev = f.ok(Command::Reconf {
        master: "mymaster".into(),
        epoch: 1,
        replica: addr("10.0.0.3:6379"),
        stage: ReconfStage::Sent,
    });
    assert_eq!(
        ev[0].payload,
        "slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster 10.0.0.2 6379"
    );
    f.ok(Command::Reconf {
        master: "mymaster".into(),
        epoch: 1,
        replica: addr("10.0.0.3:6379"),
        stage: ReconfStage::Done,
    });
    let ev = f.ok(Command::FailoverEnd {
        master: "mymaster".into(),
        epoch: 1,
        timed_out: false,
        at_ms: 9500,
    });
    assert_eq!(Fixture::kinds(&ev), ["+failover-end"]);
    let rec = f.s.history.back().unwrap();
    assert_eq!(rec.outcome, "ended");
    assert_eq!(rec.promoted_at_ms, Some(9000));
    assert_eq!(rec.ended_at_ms, Some(9500));
}

#[test]
fn abort_keeps_address_and_epoch_only_grows() {
    let mut f = Fixture::new();
    f.ok(Command::FailoverRequest {
        master: "mymaster".into(),
        reason: FailoverReason::Forced,
        target: None,
        at_ms: 1,
    });
    assert!(f.m().failover_request.is_some());
    let rej = f.err(Command::FailoverRequest {
        master: "mymaster".into(),
        reason: FailoverReason::Forced,
        target: None,
        at_ms: 2,
    });
    assert_eq!(rej.message, "INPROG Failover already in progress");
    assert!(f
        .start(3, "10.0.0.2:6379", FailoverReason::Forced)
        .result
        .is_ok());
    assert!(
        f.m().failover_request.is_none(),
        "start answers the request"
    );
    let ev = f.ok(Command::FailoverAbort {
        master: "mymaster".into(),
        epoch: 3,
        why: "slave-timeout: no promotion within 10000 ms".into(),
        at_ms: 10,
    });
    assert_eq!(Fixture::kinds(&ev), ["-failover-abort-slave-timeout"]);
    assert_eq!(f.m().addr, addr("10.0.0.1:6379"));
    assert_eq!(f.s.current_epoch, 3);
    // Epochs never go back: equal or lower epochs are refused.
    for e in [1, 2, 3] {
        let rej = f
            .start(e, "10.0.0.2:6379", FailoverReason::Forced)
            .result
            .unwrap_err();
        assert!(rej.message.contains("stale epoch"), "{rej}");
    }
    assert_eq!(f.s.current_epoch, 3);
    // An epoch-0 abort answers a request that found no candidate.
    f.ok(Command::FailoverRequest {
        master: "mymaster".into(),
        reason: FailoverReason::Forced,
        target: None,
        at_ms: 20,
    });
    let ev = f.ok(Command::FailoverAbort {
        master: "mymaster".into(),
        epoch: 0,
        why: "no-good-slave: no replica is eligible".into(),
        at_ms: 21,
    });
    assert_eq!(Fixture::kinds(&ev), ["-failover-abort-no-good-slave"]);
    assert!(f.m().failover_request.is_none());
    assert_eq!(f.s.history.back().unwrap().reason, FailoverReason::Forced);
}

#[test]
fn pause_blocks_automatic_failover_and_budget_limits_flapping() {
    let mut f = Fixture::new();
    f.ok(Command::Pause {
        master: "mymaster".into(),
    });
    f.observe(1, true);
    f.observe(2, true);
    let rej = f
        .start(1, "10.0.0.2:6379", FailoverReason::Odown)
        .result
        .unwrap_err();
    assert!(rej.message.contains("paused"));
    f.ok(Command::Resume {
        master: "mymaster".into(),
    });
    f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("failover-budget".into(), "1".into())],
    });
    assert!(f
        .start(1, "10.0.0.2:6379", FailoverReason::Odown)
        .result
        .is_ok());
    f.ok(Command::FailoverAbort {
        master: "mymaster".into(),
        epoch: 1,
        why: "x".into(),
        at_ms: 1,
    });
    let rej = f
        .start(2, "10.0.0.2:6379", FailoverReason::Odown)
        .result
        .unwrap_err();
    assert!(rej.message.contains("budget"), "{rej}");
    // Operators can still force one.
    assert!(f
        .start(2, "10.0.0.2:6379", FailoverReason::Forced)
        .result
        .is_ok());
}

#[test]
fn reset_matches_glob_and_counts() {
    let mut f = Fixture::new();
    f.ok(Command::Monitor {
        spec: spec("other", "10.0.0.5:6379", 1),
    });
    f.ok(Command::Replicas {
        master: "mymaster".into(),
        replicas: vec![addr("10.0.0.2:6379")],
    });
    f.observe(1, true);
    f.idx += 1;
    let a = f.s.apply(
        f.idx,
        &Command::Reset {
            pattern: "my*".into(),
        },
    );
    assert_eq!(a.result.unwrap().count, 1);
    assert_eq!(Fixture::kinds(&a.events), ["+reset-master"]);
    assert!(f.m().replicas.is_empty() && f.m().observations.is_empty());
}

#[test]
fn membership_change_drops_observations_of_departed_nodes() {
    let mut f = Fixture::new();
    f.observe(1, true);
    f.observe(3, true);
    assert!(f.m().is_odown());
    f.idx += 1;
    let voters: BTreeSet<u64> = [1, 2].into();
    let ev = f.s.set_membership(f.idx, &voters, &BTreeSet::new(), None);
    assert_eq!(Fixture::kinds(&ev), ["-odown"]);
    assert!(!f.s.members.contains_key(&3));
    f.idx += 1;
    let voters: BTreeSet<u64> = [1, 2, 4].into();
    f.s.set_membership(
        f.idx,
        &voters,
        &BTreeSet::new(),
        Some((4, "n4:7701".into())),
    );
    assert_eq!(f.s.members[&4].info.peer_addr.as_deref(), Some("n4:7701"));
    f.ok(Command::Announce {
        node: 4,
        info: MemberInfo {
            peer_addr: None,
            sentinel_addr: Some("n4:26379".into()),
            grpc_addr: Some("n4:7700".into()),
            run_id: Some("a".repeat(40)),
            command_version: None,
        },
    });
    let m = &f.s.members[&4];
    assert_eq!(
        m.info.peer_addr.as_deref(),
        Some("n4:7701"),
        "announce keeps the peer address"
    );
    assert_eq!(m.info.sentinel_addr.as_deref(), Some("n4:26379"));
    f.err(Command::Announce {
        node: 9,
        info: MemberInfo::default(),
    });
}

#[test]
fn snapshot_round_trip_and_determinism() {
    let script = |s: &mut ClusterState| {
        let mut idx = s.applied_index;
        let mut all_events = Vec::new();
        let cmds = vec![
            Command::Monitor {
                spec: spec("b", "10.1.0.1:6379", 1),
            },
            Command::Replicas {
                master: "b".into(),
                replicas: vec![addr("10.1.0.2:6379")],
            },
            Command::Observe {
                node: 2,
                master: "b".into(),
                addr: addr("10.1.0.1:6379"),
                down: true,
                reason: ObserveReason::NoReply,
                at_ms: 10,
            },
            Command::FailoverStart {
                master: "b".into(),
                epoch: 1,
                candidate: addr("10.1.0.2:6379"),
                reason: FailoverReason::Odown,
                leader: 2,
                at_ms: 11,
            },
            Command::FailoverDone {
                master: "b".into(),
                epoch: 1,
                new_addr: addr("10.1.0.2:6379"),
                at_ms: 12,
            },
            Command::Set {
                name: "b".into(),
                options: vec![("parallel-syncs".into(), "2".into())],
            },
        ];
        for c in cmds {
            idx += 1;
            let a = s.apply(idx, &c);
            assert!(a.result.is_ok(), "{c:?}: {:?}", a.result);
            all_events.extend(a.events);
        }
        all_events
    };
    let (mut a, _) = base();
    let (mut b, _) = base();
    let ea = script(&mut a);
    let eb = script(&mut b);
    assert_eq!(a, b, "same log, same state");
    assert_eq!(ea, eb, "same log, same events");
    let bytes = a.to_bytes();
    let restored = ClusterState::from_bytes(&bytes).unwrap();
    assert_eq!(restored, a);
    assert_eq!(restored.to_bytes(), bytes);
    assert!(ClusterState::from_bytes(b"{not json").is_err());
}

#[test]
fn command_encoding_round_trips_and_rejects_unknown_versions() {
    let c = Command::Observe {
        node: 1,
        master: "m".into(),
        addr: addr("h:1"),
        down: true,
        reason: ObserveReason::EmptyRestart,
        at_ms: 5,
    };
    assert_eq!(Command::decode(&c.encode()).unwrap(), c);
    let mut v: serde_json::Value = serde_json::from_slice(&c.encode()).unwrap();
    v["v"] = 99.into();
    assert!(Command::decode(&serde_json::to_vec(&v).unwrap()).is_err());
    assert!(Command::decode(b"\x00\x01garbage").is_err());
}

#[test]
#[should_panic(expected = "apply gap or regression")]
fn applying_an_old_index_is_an_invariant_violation() {
    let (mut s, idx) = base();
    s.apply(
        idx,
        &Command::Pause {
            master: "mymaster".into(),
        },
    );
}

#[test]
fn fencing_is_recorded_and_refused_when_the_master_moved() {
    let mut f = Fixture::new();
    let ev = f.ok(Command::Fence {
        master: "mymaster".into(),
        epoch: 0,
        instance: addr("10.0.0.9:6379"),
        kind: FenceKind::ConvertToSlave,
    });
    assert_eq!(Fixture::kinds(&ev), ["+convert-to-slave"]);
    assert_eq!(
        ev[0].payload,
        "slave 10.0.0.9:6379 10.0.0.9 6379 @ mymaster 10.0.0.1 6379"
    );
    assert!(
        f.m().replicas.contains(&addr("10.0.0.9:6379")),
        "a demoted instance is a replica"
    );
    let ev = f.ok(Command::Fence {
        master: "mymaster".into(),
        epoch: 0,
        instance: addr("10.0.0.9:6379"),
        kind: FenceKind::FixSlaveConfig,
    });
    assert_eq!(Fixture::kinds(&ev), ["+fix-slave-config"]);
    // Decided under an old epoch: refused, nothing happens.
    let rej = f.err(Command::Fence {
        master: "mymaster".into(),
        epoch: 7,
        instance: addr("10.0.0.9:6379"),
        kind: FenceKind::ConvertToSlave,
    });
    assert!(rej.message.contains("changed"), "{rej}");
    f.err(Command::Fence {
        master: "mymaster".into(),
        epoch: 0,
        instance: addr("10.0.0.1:6379"),
        kind: FenceKind::ConvertToSlave,
    });
}

#[test]
fn vote_lifetime_is_twice_down_after_with_a_floor() {
    let mut f = Fixture::new();
    assert_eq!(f.m().vote_ttl_ms(), 5_000, "down_after 1 s: the 5 s floor");
    f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("down-after-milliseconds".into(), "4000".into())],
    });
    assert_eq!(f.m().vote_ttl_ms(), 8_000);
}

/// The issue's scenario: C (node 3) votes down, goes away, and much later A (node 1) has a
/// blip. C's old vote must not complete the quorum, and an event says why.
#[test]
fn a_stale_down_vote_does_not_complete_the_quorum() {
    let mut f = Fixture::new();
    let t0 = 1_000_000;
    let a = f.observe_at(3, true, t0);
    assert_eq!(Fixture::kinds(&a.events), ["+sdown"]);
    // Just past the lifetime (5 s): ignored, and said so.
    let a = f.observe_at(1, true, t0 + 5_001);
    assert!(a.result.is_ok());
    assert_eq!(Fixture::kinds(&a.events), ["+sdown", "+vote-ignored"]);
    assert_eq!(
        a.events[1].payload,
        "master mymaster 10.0.0.1 6379 #node 3 expired: last affirmed 5001 ms before, limit 5000 ms"
    );
    assert_eq!(a.events[1].master.as_deref(), Some("mymaster"));
    assert!(!f.m().is_odown());
    assert_eq!(f.m().down_votes_at(t0 + 5_001), 1);
    // Said once per vote: A's next affirmation does not repeat it.
    let a = f.observe_at(1, true, t0 + 6_000);
    assert!(a.events.is_empty(), "{:?}", a.events);
    assert!(!f.m().is_odown());
    // A leader cannot start an ODOWN failover either.
    let rej = f.err(Command::FailoverStart {
        master: "mymaster".into(),
        epoch: 1,
        candidate: addr("10.0.0.2:6379"),
        reason: FailoverReason::Odown,
        leader: 1,
        at_ms: t0 + 6_001,
    });
    assert_eq!(rej.kind, RejectKind::Precondition);
    // C comes back and re-affirms: its vote counts again, now the quorum is real.
    let a = f.observe_at(3, true, t0 + 6_500);
    assert_eq!(Fixture::kinds(&a.events), ["+odown"]);
    assert!(f.m().is_odown_at(t0 + 6_500));
}

#[test]
fn a_vote_exactly_at_the_limit_still_counts() {
    let mut f = Fixture::new();
    let t0 = 2_000_000;
    f.observe_at(3, true, t0);
    let a = f.observe_at(1, true, t0 + 5_000);
    assert_eq!(Fixture::kinds(&a.events), ["+sdown", "+odown"]);
}

#[test]
fn a_vote_from_the_future_is_ignored_as_clock_skew() {
    let mut f = Fixture::new();
    let t0 = 3_000_000;
    // Node 3's clock is a minute ahead.
    f.observe_at(3, true, t0 + 60_000);
    let a = f.observe_at(1, true, t0);
    assert_eq!(Fixture::kinds(&a.events), ["+sdown", "+vote-ignored"]);
    assert!(
        a.events[1]
            .payload
            .ends_with("#node 3 clock-skew: stamped 60000 ms ahead, limit 5000 ms"),
        "{}",
        a.events[1].payload
    );
    assert!(!f.m().is_odown());
}

#[test]
fn a_reaffirmed_vote_stays_valid_and_odown_ends_when_votes_expire() {
    let mut f = Fixture::new();
    let t0 = 4_000_000;
    f.observe_at(1, true, t0);
    f.observe_at(3, true, t0 + 100);
    assert!(f.m().is_odown());
    // Both keep affirming every 1.25 s for a minute: ODOWN holds, no event.
    let mut t = t0 + 100;
    while t < t0 + 60_000 {
        t += 1_250;
        let a = f.observe_at(1, true, t);
        assert!(a.events.is_empty(), "{:?}", a.events);
        let a = f.observe_at(3, true, t + 10);
        assert!(a.events.is_empty(), "{:?}", a.events);
    }
    assert!(f.m().is_odown_at(t + 10));
    // Node 3 stops (no more affirmations); node 1 keeps going. Past the lifetime, ODOWN ends.
    let a = f.observe_at(1, true, t + 5_011);
    assert_eq!(Fixture::kinds(&a.events), ["+vote-ignored", "-odown"]);
    assert!(!f.m().is_odown());
}

#[test]
fn failover_start_rechecks_vote_freshness_at_the_leaders_time() {
    let mut f = Fixture::new();
    let t0 = 5_000_000;
    f.observe_at(1, true, t0);
    f.observe_at(3, true, t0 + 10);
    assert!(f.m().is_odown());
    assert!(f.m().is_odown_at(t0 + 5_000));
    assert!(!f.m().is_odown_at(t0 + 5_001), "node 1's vote expired");
    // Both voters went silent; the leader's decision comes too late.
    let rej = f.err(Command::FailoverStart {
        master: "mymaster".into(),
        epoch: 1,
        candidate: addr("10.0.0.2:6379"),
        reason: FailoverReason::Odown,
        leader: 2,
        at_ms: t0 + 5_001,
    });
    assert!(
        rej.message.contains("1 of 2 down votes are recent"),
        "{}",
        rej.message
    );
    // In time, it is accepted.
    let a = f.apply(Command::FailoverStart {
        master: "mymaster".into(),
        epoch: 1,
        candidate: addr("10.0.0.2:6379"),
        reason: FailoverReason::Odown,
        leader: 2,
        at_ms: t0 + 4_000,
    });
    assert!(a.result.is_ok(), "{:?}", a.result);
}

#[test]
fn evaluations_without_an_entry_time_use_the_log_clock() {
    let mut f = Fixture::new();
    let t0 = 6_000_000;
    f.observe_at(3, true, t0);
    // Any evaluation reports the stale vote, an up vote's too.
    let a = f.observe_at(2, false, t0 + 20_000);
    assert_eq!(Fixture::kinds(&a.events), ["+vote-ignored"]);
    assert_eq!(f.s.clock_ms, t0 + 20_000);
    // Lowering the quorum to 1 evaluates at the log clock, where node 3's vote is stale.
    let ev = f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("quorum".into(), "1".into())],
    });
    assert_eq!(Fixture::kinds(&ev), ["+set"]);
    assert!(!f.m().is_odown());
    // Two nodes applying the same membership change get the same state whatever their clocks.
    let mut g = f.s.clone();
    f.idx += 1;
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    let e1 = f.s.set_membership(f.idx, &voters, &BTreeSet::new(), None);
    let e2 = g.set_membership(f.idx, &voters, &BTreeSet::new(), None);
    assert_eq!(e1, e2);
    assert_eq!(f.s, g);
    // A rejected command does not move the clock.
    f.err(Command::Observe {
        node: 1,
        master: "mymaster".into(),
        addr: addr("10.9.9.9:6379"),
        down: true,
        reason: ObserveReason::NoReply,
        at_ms: t0 + 99_000,
    });
    assert_eq!(f.s.clock_ms, t0 + 20_000);
}

#[test]
fn snapshots_without_the_new_fields_still_load() {
    let (s, _) = base();
    let mut v: serde_json::Value = serde_json::from_slice(&s.to_bytes()).unwrap();
    v.as_object_mut().unwrap().remove("clock_ms");
    let back = ClusterState::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(back, s);
    let o: Observation =
        serde_json::from_str(r#"{"down":true,"reason":"no_reply","at_ms":5}"#).unwrap();
    assert!(!o.ignored);
}

#[test]
fn names_addresses_and_secrets_are_capped() {
    use super::limits::{MAX_NAME_LEN, MAX_SECRET_LEN};
    let mut f = Fixture::new();
    let long = "n".repeat(MAX_NAME_LEN + 1);
    let rej = f.err(Command::Monitor {
        spec: spec(&long, "10.0.0.9:6379", 2),
    });
    assert_eq!(rej.kind, RejectKind::Invalid);
    assert!(
        rej.message
            .contains("master name is 257 bytes long; the limit is 256"),
        "{}",
        rej.message
    );
    f.ok(Command::Monitor {
        spec: spec(&"n".repeat(MAX_NAME_LEN), "10.0.0.9:6379", 2),
    });
    let host = "h".repeat(MAX_NAME_LEN + 1);
    let rej = f.err(Command::Monitor {
        spec: spec("other", &format!("{host}:6379"), 2),
    });
    assert!(
        rej.message.contains("master host is 257 bytes"),
        "{}",
        rej.message
    );
    let rej = f.err(Command::Monitor {
        spec: spec("other", "a\"b:6379", 2),
    });
    assert!(rej.message.contains("quote"), "{}", rej.message);
    let rej = f.err(Command::Monitor {
        spec: MasterSpec {
            auth_pass: Some("p".repeat(MAX_SECRET_LEN + 1)),
            ..spec("other", "10.0.0.8:6379", 2)
        },
    });
    assert!(
        rej.message.contains("auth-pass is 513 bytes"),
        "{}",
        rej.message
    );
    let rej = f.err(Command::Set {
        name: "mymaster".into(),
        options: vec![("auth-pass".into(), "p".repeat(MAX_SECRET_LEN + 1))],
    });
    assert!(rej.message.contains("auth-pass"), "{}", rej.message);
    f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("auth-pass".into(), "p".repeat(MAX_SECRET_LEN))],
    });
    let rej = f.err(Command::Set {
        name: "mymaster".into(),
        options: vec![("auth-user".into(), "u".repeat(MAX_NAME_LEN + 1))],
    });
    assert!(rej.message.contains("auth-user"), "{}", rej.message);
    let rej = f.err(Command::Announce {
        node: 1,
        info: MemberInfo {
            run_id: Some("r".repeat(65)),
            ..MemberInfo::default()
        },
    });
    assert!(rej.message.contains("run id"), "{}", rej.message);
}

#[test]
fn the_number_of_masters_and_replicas_is_capped() {
    use super::limits::{MAX_MASTERS, MAX_REPLICAS};
    let mut f = Fixture::new();
    for i in 1..MAX_MASTERS {
        f.ok(Command::Monitor {
            spec: spec(
                &format!("m{i}"),
                &format!("10.1.{}.{}:6379", i / 200, i % 200),
                2,
            ),
        });
    }
    assert_eq!(f.s.masters.len(), MAX_MASTERS);
    let rej = f.err(Command::Monitor {
        spec: spec("one-too-many", "10.2.0.1:6379", 2),
    });
    assert!(
        rej.message.contains("at most 256 masters"),
        "a clear error names the limit: {}",
        rej.message
    );
    // Replicas past the cap (and over-long hosts) are not recorded.
    let many: Vec<Addr> = (0..MAX_REPLICAS + 5)
        .map(|i| addr(&format!("10.3.0.{}:6379", i + 1)))
        .chain([addr(&format!("{}:6379", "h".repeat(300)))])
        .collect();
    f.ok(Command::Replicas {
        master: "mymaster".into(),
        replicas: many,
    });
    assert_eq!(f.m().replicas.len(), MAX_REPLICAS);
    assert!(f.m().replicas.iter().all(|r| r.host.len() < 20));
}

#[test]
fn a_long_abort_reason_is_cut_in_the_history() {
    let mut f = Fixture::new();
    f.ok(Command::FailoverAbort {
        master: "mymaster".into(),
        epoch: 0,
        why: format!("no-good-slave: {}", "é".repeat(1000)),
        at_ms: 1,
    });
    let rec = f.s.history.back().unwrap();
    assert!(rec.outcome.len() <= "aborted: ".len() + super::limits::MAX_REASON_LEN);
    assert!(rec.outcome.starts_with("aborted: no-good-slave: é"));
}

#[test]
fn forgotten_replicas_leave_with_a_minus_slave_event() {
    let mut f = Fixture::new();
    assert_eq!(
        f.m().replica_forget_after_ms,
        3_600_000,
        "default: one hour"
    );
    f.ok(Command::Replicas {
        master: "mymaster".into(),
        replicas: vec![addr("10.0.0.2:6379"), addr("10.0.0.3:6379")],
    });
    let a = f.apply(Command::ForgetReplicas {
        master: "mymaster".into(),
        replicas: vec![addr("10.0.0.3:6379"), addr("10.0.0.9:6379")],
    });
    assert_eq!(
        a.result.as_ref().unwrap().count,
        1,
        "unknown ones are no-ops"
    );
    assert_eq!(Fixture::kinds(&a.events), ["-slave"]);
    assert_eq!(
        a.events[0].payload,
        "slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster 10.0.0.1 6379"
    );
    assert!(!f.m().replicas.contains(&addr("10.0.0.3:6379")));
    // Never the replica a failover is promoting.
    f.observe(1, true);
    f.observe(3, true);
    f.start(1, "10.0.0.2:6379", FailoverReason::Odown);
    let a = f.apply(Command::ForgetReplicas {
        master: "mymaster".into(),
        replicas: vec![addr("10.0.0.2:6379")],
    });
    assert_eq!(a.result.unwrap().count, 0);
    assert!(f.m().replicas.contains(&addr("10.0.0.2:6379")));
    // Configurable per master; 0 turns it off.
    f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("replica-forget-after".into(), "0".into())],
    });
    assert_eq!(f.m().replica_forget_after_ms, 0);
    f.err(Command::Set {
        name: "mymaster".into(),
        options: vec![("replica-forget-after".into(), "soon".into())],
    });
}

/// Every voter of `base` announces that it reads the newest format.
fn upgraded() -> Vec<Command> {
    (1..=3)
        .map(|node| Command::Announce {
            node,
            info: MemberInfo {
                command_version: Some(SUPPORTED_VERSION),
                ..MemberInfo::default()
            },
        })
        .collect()
}

/// Every node that applies an entry must decide a limit the same way. A format 1 node (from
/// before the limits) applies whatever the limits would refuse, so until the committed cluster
/// version says every member enforces them, no node does; from the entry that raises it on,
/// every node does.
#[test]
fn limits_are_enforced_only_from_the_cluster_version_that_has_them() {
    use super::limits::{
        BOUNDED_STATE_VERSION, LEGACY_HISTORY_LIMIT, MAX_MASTERS, MAX_NAME_LEN, MAX_REASON_LEN,
        MAX_REPLICAS, MAX_SECRET_LEN,
    };
    let (s, idx) = base_at(BASE_VERSION);
    let mut f = Fixture { s, idx };
    const { assert!(BOUNDED_STATE_VERSION > BASE_VERSION) };
    // What a format 1 node decides: all of these are applied.
    for i in 1..=MAX_MASTERS {
        f.ok(Command::Monitor {
            spec: spec(
                &format!("m{i}"),
                &format!("10.1.{}.{}:6379", i / 200, i % 200),
                2,
            ),
        });
    }
    assert_eq!(f.s.masters.len(), MAX_MASTERS + 1);
    let long_name = "n".repeat(MAX_NAME_LEN + 1);
    f.ok(Command::Monitor {
        spec: MasterSpec {
            auth_pass: Some("p".repeat(MAX_SECRET_LEN + 1)),
            ..spec(&long_name, "10.0.0.9:6379", 2)
        },
    });
    f.ok(Command::Set {
        name: "mymaster".into(),
        options: vec![("auth-user".into(), "u".repeat(MAX_NAME_LEN + 1))],
    });
    f.ok(Command::Reset {
        pattern: "x".repeat(MAX_NAME_LEN + 1),
    });
    f.ok(Command::Announce {
        node: 1,
        info: MemberInfo {
            run_id: Some("r".repeat(65)),
            ..MemberInfo::default()
        },
    });
    let many: Vec<Addr> = (0..MAX_REPLICAS + 5)
        .map(|i| addr(&format!("10.3.0.{}:6379", i + 1)))
        .collect();
    f.ok(Command::Replicas {
        master: "mymaster".into(),
        replicas: many.clone(),
    });
    assert_eq!(f.m().replicas.len(), MAX_REPLICAS + 5);
    let why = format!("no-good-slave: {}", "w".repeat(2 * MAX_REASON_LEN));
    f.ok(Command::FailoverAbort {
        master: "mymaster".into(),
        epoch: 0,
        why: why.clone(),
        at_ms: 1,
    });
    assert_eq!(
        f.s.history.back().unwrap().outcome,
        format!("aborted: {why}"),
        "the reason is kept whole, as format 1 keeps it"
    );
    // The history is one shared list of LEGACY_HISTORY_LIMIT, as in format 1.
    for i in 0..LEGACY_HISTORY_LIMIT {
        f.ok(Command::FailoverAbort {
            master: format!("m{}", 1 + i % 2),
            epoch: 0,
            why: "no-good-slave".into(),
            at_ms: 2,
        });
    }
    assert_eq!(f.s.history.len(), LEGACY_HISTORY_LIMIT);
    assert!(f.s.history.iter().all(|r| r.master != "mymaster"));
    // Removing a master keeps its records (format 1 does).
    f.ok(Command::Remove { name: "m1".into() });
    assert_eq!(f.s.history.len(), LEGACY_HISTORY_LIMIT);

    // The version is raised by a committed entry once every member reads it: from there on,
    // every limit holds.
    for cmd in upgraded() {
        f.ok(cmd);
    }
    f.ok(Command::ClusterVersion {
        version: BOUNDED_STATE_VERSION,
    });
    f.ok(Command::Remove { name: "m2".into() });
    assert!(
        f.s.history.iter().all(|r| r.master != "m2"),
        "a removed master's history goes with it"
    );
    assert!(f.s.masters.len() >= MAX_MASTERS);
    let rej = f.err(Command::Monitor {
        spec: spec("one-too-many", "10.2.0.1:6379", 2),
    });
    assert!(
        rej.message.contains("at most 256 masters"),
        "{}",
        rej.message
    );
    f.err(Command::Monitor {
        spec: spec(&"o".repeat(MAX_NAME_LEN + 1), "10.0.0.10:6379", 2),
    });
    f.err(Command::Set {
        name: "mymaster".into(),
        options: vec![("auth-pass".into(), "p".repeat(MAX_SECRET_LEN + 1))],
    });
    f.err(Command::Reset {
        pattern: "x".repeat(MAX_NAME_LEN + 1),
    });
    f.err(Command::Announce {
        node: 2,
        info: MemberInfo {
            run_id: Some("r".repeat(65)),
            ..MemberInfo::default()
        },
    });
    f.ok(Command::FailoverAbort {
        master: "mymaster".into(),
        epoch: 0,
        why: why.clone(),
        at_ms: 3,
    });
    assert!(f.s.history.back().unwrap().outcome.len() <= "aborted: ".len() + MAX_REASON_LEN);
    // Replicas already recorded stay; no new one is recorded past the cap.
    f.ok(Command::Replicas {
        master: "mymaster".into(),
        replicas: vec![addr("10.4.0.1:6379")],
    });
    assert_eq!(f.m().replicas.len(), MAX_REPLICAS + 5);

    // Two nodes that apply the same entries decide the same way (the decision depends on the
    // committed state only): replaying the log onto a copy gives an identical state.
    let (mut a, mut b) = (base_at(BASE_VERSION).0, base_at(BASE_VERSION).0);
    let log = [Command::Monitor {
        spec: spec(&long_name, "10.0.0.9:6379", 2),
    }]
    .into_iter()
    .chain(upgraded())
    .chain([
        Command::ClusterVersion {
            version: BOUNDED_STATE_VERSION,
        },
        Command::Monitor {
            spec: spec(&"p".repeat(MAX_NAME_LEN + 1), "10.0.0.11:6379", 2),
        },
    ])
    .collect::<Vec<_>>();
    let mut results = Vec::new();
    for (i, cmd) in log.iter().enumerate() {
        let ra = a.apply(100 + i as u64, cmd).result.is_ok();
        let rb = b.apply(100 + i as u64, cmd).result.is_ok();
        assert_eq!(ra, rb);
        results.push(ra);
    }
    assert_eq!(results, [true, true, true, true, true, false]);
    assert_eq!(a, b);
}

/// Each rule of a monitored master's spec refuses with the message it has always had (the
/// rules are shared with the config file, which words them itself).
#[test]
fn each_master_rule_has_its_message() {
    use super::limits::{MAX_NAME_LEN, MAX_SECRET_LEN};
    let mut f = Fixture::new();
    type Change = Box<dyn Fn(&mut MasterSpec)>;
    let cases: Vec<(Change, String)> =
        vec![
        (
            Box::new(|s| s.notification_script = Some("rel.sh".into())),
            "script path must be absolute, without control characters: \"rel.sh\"".into(),
        ),
        (
            Box::new(|s| s.client_reconfig_script = Some(format!("/{}", "x".repeat(4096)))),
            "script path must be absolute, without control characters".into(),
        ),
        (
            Box::new(|s| s.addr.host = "h".repeat(MAX_NAME_LEN + 1)),
            "master host is 257 bytes long; the limit is 256".into(),
        ),
        (
            Box::new(|s| s.addr.host = "a\"b".into()),
            "master host contains a quote or a backslash".into(),
        ),
        (
            Box::new(|s| s.auth_user = Some("u".repeat(MAX_NAME_LEN + 1))),
            "auth-user is 257 bytes long; the limit is 256".into(),
        ),
        (
            Box::new(|s| s.auth_pass = Some("p".repeat(MAX_SECRET_LEN + 1))),
            "auth-pass is 513 bytes long; the limit is 512".into(),
        ),
        (Box::new(|s| s.quorum = 0), "Quorum must be 1 or greater.".into()),
        (
            Box::new(|s| s.name = "my master".into()),
            "Invalid master name.".into(),
        ),
        (Box::new(|s| s.name = String::new()), "Invalid master name.".into()),
        (
            Box::new(|s| s.down_after_ms = 0),
            "down-after-milliseconds, failover-timeout and parallel-syncs must be greater than 0"
                .into(),
        ),
        (
            Box::new(|s| s.failover_timeout_ms = 0),
            "down-after-milliseconds, failover-timeout and parallel-syncs must be greater than 0"
                .into(),
        ),
        (
            Box::new(|s| s.parallel_syncs = 0),
            "down-after-milliseconds, failover-timeout and parallel-syncs must be greater than 0"
                .into(),
        ),
    ];
    for (change, want) in cases {
        let mut s = spec("m9", "10.0.0.9:6379", 2);
        change(&mut s);
        let rej = f.err(Command::Monitor { spec: s });
        assert_eq!(rej.kind, RejectKind::Invalid);
        assert!(rej.message.starts_with(&want), "{} vs {want}", rej.message);
    }
}

/// Three masters down at once, each with a replica; returns
/// the state and the commands that make all three objectively down (two nodes each).
fn three_down() -> (Fixture, Vec<Command>) {
    let mut f = Fixture::new();
    for (i, name) in ["m1", "m2", "m3"].iter().enumerate() {
        f.ok(Command::Monitor {
            spec: spec(name, &format!("10.0.1.{}:6379", i + 1), 2),
        });
        f.ok(Command::Replicas {
            master: name.to_string(),
            replicas: vec![addr(&format!("10.0.2.{}:6379", i + 1))],
        });
    }
    let mut votes = Vec::new();
    for node in [1, 2] {
        for (i, name) in ["m1", "m2", "m3"].iter().enumerate() {
            votes.push(Command::Observe {
                node,
                master: name.to_string(),
                addr: addr(&format!("10.0.1.{}:6379", i + 1)),
                down: true,
                reason: ObserveReason::NoReply,
                at_ms: 10_000,
            });
        }
    }
    (f, votes)
}

fn start_of(name: &str, i: usize, epoch: u64) -> Command {
    Command::FailoverStart {
        master: name.into(),
        epoch,
        candidate: addr(&format!("10.0.2.{i}:6379")),
        reason: FailoverReason::Odown,
        leader: 1,
        at_ms: 10_100,
    }
}

fn done_of(name: &str, i: usize, epoch: u64) -> Command {
    Command::FailoverDone {
        master: name.into(),
        epoch,
        new_addr: addr(&format!("10.0.2.{i}:6379")),
        at_ms: 10_200,
    }
}

/// A batch is one entry whose commands apply in order, each as if it had an entry of its
/// own: the same state and the same events as one entry per command, and a refused command
/// (here a start whose epoch is not above the current one) changes nothing while the others
/// of the batch still apply.
#[test]
fn a_batch_applies_like_its_commands_one_entry_each() {
    let (mut one_each, votes) = three_down();
    let (mut batched, _) = three_down();
    let starts = vec![
        start_of("m1", 1, 1),
        start_of("m2", 2, 2),
        start_of("m3", 3, 2), // the same epoch again: refused
    ];
    let dones = vec![done_of("m2", 2, 2), done_of("m1", 1, 1)];

    let mut events_one = Vec::new();
    let mut results_one = Vec::new();
    for cmd in votes.iter().chain(&starts).chain(&dones) {
        let a = one_each.apply(cmd.clone());
        results_one.push(a.result.is_ok());
        events_one.extend(a.events);
    }

    let mut events_batched = Vec::new();
    let mut results_batched = Vec::new();
    for group in [&votes, &starts, &dones] {
        batched.idx += 1;
        let idx = batched.idx;
        let applied = batched.s.apply_batch(idx, group);
        assert_eq!(applied.len(), group.len());
        assert_eq!(batched.s.applied_index, idx);
        for a in applied {
            results_batched.push(a.result.is_ok());
            events_batched.extend(a.events);
        }
    }
    assert_eq!(results_batched, results_one);
    assert_eq!(
        results_one[6..9],
        [true, true, false],
        "only the repeated epoch is refused"
    );
    assert_eq!(events_batched, events_one);
    let kinds: Vec<&str> = events_batched
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| ["+odown", "+switch-master", "+new-epoch"].contains(k))
        .collect();
    assert_eq!(
        kinds,
        [
            "+odown",
            "+odown",
            "+odown",
            "+new-epoch",
            "+new-epoch",
            "+switch-master",
            "+switch-master"
        ]
    );
    // The same state but for where entries fell: indexes differ, nothing else.
    let normalise = |s: &ClusterState| {
        let mut s = s.clone();
        s.applied_index = 0;
        for r in &mut s.history {
            r.promoted_index = None;
        }
        s
    };
    assert_eq!(normalise(&batched.s), normalise(&one_each.s));
    assert_eq!(batched.s.current_epoch, 2);
    assert!(batched.s.masters["m3"].failover.is_none());
    assert_eq!(batched.s.masters["m1"].addr, addr("10.0.2.1:6379"));
    assert_eq!(batched.s.masters["m2"].addr, addr("10.0.2.2:6379"));
    // Both switches of the last batch are recorded at its index.
    let at: Vec<Option<u64>> = batched.s.history.iter().map(|r| r.promoted_index).collect();
    assert_eq!(at, [Some(batched.idx), Some(batched.idx)]);
}

/// `apply` of a whole batch (what a caller without per-command outcomes sees) counts the
/// commands that applied and returns every event; a batch inside a batch is refused alone.
#[test]
fn a_batch_counts_what_applied_and_refuses_nesting() {
    let (mut f, votes) = three_down();
    let nested = Command::Batch {
        commands: vec![votes[0].clone()],
    };
    let mut commands = votes.clone();
    commands.push(nested);
    let a = f.apply(Command::Batch { commands });
    assert_eq!(a.result, Ok(Outcome { count: 6 }));
    assert_eq!(
        Fixture::kinds(&a.events)
            .iter()
            .filter(|k| **k == "+odown")
            .count(),
        3
    );
    let idx = f.idx + 1;
    let r = f.s.apply_batch(
        idx,
        &[Command::Batch {
            commands: Vec::new(),
        }],
    );
    assert_eq!(r[0].result.as_ref().unwrap_err().kind, RejectKind::Invalid);
    assert!(r[0].events.is_empty());
}

/// A batch is written in its own format, so an older node never meets one: the cluster
/// version gates it (the node proposes batches only from `BATCH_VERSION` on), and a batch
/// holding a newer command says the newer format.
#[test]
fn a_batch_has_its_own_format_and_round_trips() {
    let (_, votes) = three_down();
    let b = Command::Batch {
        commands: votes.clone(),
    };
    assert_eq!(b.format_version(), BATCH_VERSION);
    const { assert!(BATCH_VERSION > 4 && BATCH_VERSION <= SUPPORTED_VERSION) };
    let v: serde_json::Value = serde_json::from_slice(&b.encode()).unwrap();
    assert_eq!(v["v"], BATCH_VERSION);
    assert_eq!(Command::decode(&b.encode()).unwrap(), b);
    // What a node of format 4 does with it: it cannot read it.
    let mut older = v.clone();
    older["v"] = serde_json::json!(SUPPORTED_VERSION + 1);
    assert!(Command::decode(&serde_json::to_vec(&older).unwrap()).is_err());
    // Observations and failover decisions may share an entry; cluster-wide commands do not.
    assert!(votes[0].batchable());
    assert!(start_of("m1", 1, 1).batchable());
    assert!(done_of("m1", 1, 1).batchable());
    assert!(!Command::ClusterVersion { version: 5 }.batchable());
    assert!(!Command::Remove { name: "m".into() }.batchable());
    assert!(!b.batchable());
}

/// The same committed entries, applied at a cluster version: what each node decides.
struct VoteLog {
    events: Vec<Vec<String>>,
    results: Vec<bool>,
    odown_after_blip: bool,
    state: ClusterState,
}

/// C (node 3) votes down and goes silent; 20 s later A (node 1) has a blip and a leader
/// proposes an ODOWN failover. Then, on a second master, a quorum that was fresh when ODOWN
/// began is decided on 30 s later.
fn replay_vote_log(version: u32) -> VoteLog {
    let (s, idx) = base_at(version);
    let mut f = Fixture { s, idx };
    f.ok(Command::Monitor {
        spec: spec("other", "10.0.0.5:6379", 2),
    });
    let t0 = 7_000_000;
    let observe = |master: &str, a: &str, node: u64, at_ms: u64| Command::Observe {
        node,
        master: master.into(),
        addr: addr(a),
        down: true,
        reason: ObserveReason::NoReply,
        at_ms,
    };
    let start = |master: &str, epoch: u64, candidate: &str, at_ms: u64| Command::FailoverStart {
        master: master.into(),
        epoch,
        candidate: addr(candidate),
        reason: FailoverReason::Odown,
        leader: 2,
        at_ms,
    };
    let log = [
        observe("mymaster", "10.0.0.1:6379", 3, t0),
        observe("mymaster", "10.0.0.1:6379", 1, t0 + 20_000),
        start("mymaster", 1, "10.0.0.2:6379", t0 + 20_100),
        observe("other", "10.0.0.5:6379", 1, t0 + 21_000),
        observe("other", "10.0.0.5:6379", 3, t0 + 21_010),
        start("other", 2, "10.0.0.6:6379", t0 + 51_010),
    ];
    let mut out = VoteLog {
        events: Vec::new(),
        results: Vec::new(),
        odown_after_blip: false,
        state: ClusterState::default(),
    };
    for (i, cmd) in log.iter().enumerate() {
        let a = f.apply(cmd.clone());
        out.results.push(a.result.is_ok());
        out.events
            .push(a.events.iter().map(|e| e.kind.clone()).collect());
        if i == 1 {
            out.odown_after_blip = f.m().is_odown();
        }
    }
    out.state = f.s;
    out
}

/// Down votes expire only from the command format whose builds all expire them: builds of
/// format 1 counted a vote however old, and a node of this version in a cluster with such a
/// member must decide every entry as they do, or the replicated state diverges.
#[test]
fn vote_expiry_is_decided_by_the_cluster_version() {
    const { assert!(VOTE_EXPIRY_VERSION > BASE_VERSION) };
    const { assert!(VOTE_EXPIRY_VERSION <= SUPPORTED_VERSION) };
    // Format 1: C's 20 s old vote completes the quorum, both failovers are accepted, and
    // nothing says a vote was ignored.
    let old = replay_vote_log(BASE_VERSION);
    assert!(
        old.odown_after_blip,
        "a format 1 node counts the stale vote"
    );
    assert_eq!(old.results, [true; 6]);
    assert_eq!(old.events[1], ["+sdown", "+odown"]);
    assert!(old.events.iter().flatten().all(|k| k != "+vote-ignored"));
    assert_eq!(
        old.state.masters["mymaster"]
            .failover
            .as_ref()
            .unwrap()
            .epoch,
        1
    );
    assert_eq!(
        old.state.masters["other"].failover.as_ref().unwrap().epoch,
        2
    );
    // Every version from VOTE_EXPIRY_VERSION on: today's result.
    for v in VOTE_EXPIRY_VERSION..=SUPPORTED_VERSION {
        let new = replay_vote_log(v);
        assert!(!new.odown_after_blip, "format {v}: the stale vote expired");
        assert_eq!(new.events[1], ["+sdown", "+vote-ignored"], "format {v}");
        assert_eq!(
            new.results,
            [true, true, false, true, true, false],
            "format {v}"
        );
        assert!(new.state.masters["mymaster"].failover.is_none());
        assert!(new.state.masters["other"].failover.is_none());
    }
}

/// Builds from before vote expiry kept no log clock (`clock_ms`), so a node that restored
/// their snapshot and one that replayed the log hold different ones. From the entry that
/// raises the cluster version to vote expiry on, both must evaluate at the same time.
#[test]
fn the_log_clock_agrees_from_the_version_that_expires_votes() {
    let t0 = 8_000_000;
    let (mut a, mut idx) = base_at(BASE_VERSION);
    let observe =
        |node: u64, down: bool, at_ms: u64| observe_cmd(addr("10.0.0.1:6379"), node, down, at_ms);
    // Node 2's clock is a minute ahead: the latest entry time so far.
    idx += 1;
    assert!(a.apply(idx, &observe(2, false, t0 + 60_000)).result.is_ok());
    // A format 1 build's snapshot of that state has no clock.
    let mut v: serde_json::Value = serde_json::from_slice(&a.to_bytes()).unwrap();
    v.as_object_mut().unwrap().remove("clock_ms");
    let mut b = ClusterState::from_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
    let mut rest = vec![observe(3, true, t0), observe(1, true, t0 + 1_000)];
    rest.extend((1..=3).map(|node| Command::Announce {
        node,
        info: MemberInfo {
            command_version: Some(SUPPORTED_VERSION),
            ..MemberInfo::default()
        },
    }));
    rest.push(Command::ClusterVersion {
        version: SUPPORTED_VERSION,
    });
    for cmd in &rest {
        idx += 1;
        let (ra, rb) = (a.apply(idx, cmd), b.apply(idx, cmd));
        assert_eq!(ra, rb, "{cmd:?}");
        assert!(ra.result.is_ok(), "{cmd:?}: {:?}", ra.result);
    }
    assert!(a.masters["mymaster"].is_odown());
    // Node 2 leaves: an evaluation without a time of its own.
    idx += 1;
    let voters: BTreeSet<u64> = [1, 3].into();
    let ea = a.set_membership(idx, &voters, &BTreeSet::new(), None);
    let eb = b.set_membership(idx, &voters, &BTreeSet::new(), None);
    assert_eq!(ea, eb);
    assert_eq!(a, b);
}
