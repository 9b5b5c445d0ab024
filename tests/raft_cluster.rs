//! In-process clusters over the in-memory network (links can be cut and nodes isolated):
//! elections, commit on a majority, same apply order everywhere, a minority cannot commit,
//! catch-up after healing, catch-up by snapshot after compaction, epochs only increase.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_sentinel::consensus::{
    DiskStore, MemNetwork, NodeConfig, ProposeError, RaftHandle, RaftNode, Role,
};
use raft_sentinel::fsm::{
    ClusterState, Command, FailoverReason, MasterSpec, MemberInfo, ObserveReason,
};
use raft_sentinel::model::Addr;
use raft_sentinel::shutdown::{self, ShutdownTrigger};
use support::wait_for_every;
use tempfile::TempDir;
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(20);

struct TestNode {
    handle: RaftHandle,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
    _dir: Arc<TempDir>,
}

struct TestCluster {
    net: MemNetwork,
    nodes: BTreeMap<u64, TestNode>,
}

fn spec(name: &str) -> MasterSpec {
    MasterSpec {
        down_after_ms: 1000,
        failover_timeout_ms: 10_000,
        ..MasterSpec::new(name, "127.0.0.1:6379".parse().unwrap(), 2)
    }
}

/// `command_version`: the command format the node announces that it reads.
fn node_config_v(
    id: u64,
    voters: &[u64],
    compact_threshold: u64,
    command_version: Option<u32>,
) -> NodeConfig {
    NodeConfig {
        id,
        tick: TICK,
        election_ticks: 10,
        heartbeat_ticks: 2,
        compact_threshold,
        bootstrap_masters: vec![spec("mymaster")],
        self_info: MemberInfo {
            sentinel_addr: Some(format!("127.0.0.1:{}", 26000 + id)),
            command_version,
            ..MemberInfo::default()
        },
        configured_peers: voters.iter().map(|v| (*v, format!("n{v}:1"))).collect(),
    }
}

impl TestCluster {
    /// Stops node `id` and starts it again on its data dir, reading the newest command format
    /// (a rolling upgrade of that node).
    async fn upgrade(&mut self, id: u64, voters: &[u64], dir: Arc<TempDir>) {
        let old = self.nodes.remove(&id).expect("a running node");
        old.trigger.trigger();
        let _ = old.task.await;
        let new = start_node_v(
            &self.net,
            id,
            voters,
            dir,
            1000,
            Some(raft_sentinel::fsm::SUPPORTED_VERSION),
        );
        self.nodes.insert(id, new);
    }

    fn start(n: u64, compact_threshold: u64) -> TestCluster {
        let net = MemNetwork::new();
        let voters: Vec<u64> = (1..=n).collect();
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            let dir = Arc::new(tempfile::tempdir().unwrap());
            nodes.insert(id, start_node(&net, id, &voters, dir, compact_threshold));
        }
        TestCluster { net, nodes }
    }

    fn h(&self, id: u64) -> &RaftHandle {
        &self.nodes[&id].handle
    }

    async fn leader(&self, among: &[u64]) -> u64 {
        self.until(
            &format!("an agreed leader among {among:?}"),
            Duration::from_secs(10),
            || {
                let leaders: Vec<u64> = among
                    .iter()
                    .filter(|id| self.h(**id).status().role == Role::Leader)
                    .copied()
                    .collect();
                let agreed = among
                    .iter()
                    .all(|id| leaders.len() == 1 && self.h(*id).status().leader_id == leaders[0]);
                agreed.then(|| leaders[0])
            },
        )
        .await
    }

    /// Polls `f` every tick until it returns `Some`, or panics after `limit` with `what`.
    async fn until<T>(&self, what: &str, limit: Duration, f: impl FnMut() -> Option<T>) -> T {
        wait_for_every(TICK, what, limit, f).await
    }

    /// [`TestCluster::until`] for a condition with no value.
    async fn until_true(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        self.until(what, limit, || f().then_some(())).await
    }

    /// Waits until the config's masters were proposed by the first leader and applied.
    async fn wait_bootstrapped(&self, ids: &[u64]) {
        for id in ids {
            let mut rx = self.h(*id).watch_state();
            tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.bootstrapped))
                .await
                .unwrap_or_else(|_| panic!("node {id} never applied the bootstrap"))
                .unwrap();
        }
    }

    async fn wait_applied(&self, ids: &[u64], index: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for id in ids {
            let mut rx = self.h(*id).watch_state();
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, rx.wait_for(|s| s.applied_index >= index))
                .await
                .unwrap_or_else(|_| panic!("node {id} did not apply {index}"))
                .unwrap();
        }
    }

    async fn stop(self) {
        for (_, n) in self.nodes {
            n.trigger.trigger();
            let _ = n.task.await;
        }
    }
}

fn start_node(
    net: &MemNetwork,
    id: u64,
    voters: &[u64],
    dir: Arc<TempDir>,
    compact_threshold: u64,
) -> TestNode {
    start_node_v(net, id, voters, dir, compact_threshold, None)
}

fn start_node_v(
    net: &MemNetwork,
    id: u64,
    voters: &[u64],
    dir: Arc<TempDir>,
    compact_threshold: u64,
    command_version: Option<u32>,
) -> TestNode {
    let (store, rec) = DiskStore::open(dir.path(), id, "test").unwrap();
    let mailbox = RaftNode::mailbox();
    let transport = net.register(id, mailbox.0.clone());
    let (trigger, shutdown) = shutdown::channel();
    let (handle, task) = RaftNode::start(
        node_config_v(id, voters, compact_threshold, command_version),
        store,
        rec,
        voters,
        mailbox,
        Box::new(transport),
        shutdown,
    )
    .unwrap();
    TestNode {
        handle,
        trigger,
        task,
        _dir: dir,
    }
}

fn monitor(name: &str) -> Command {
    Command::Monitor { spec: spec(name) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_a_leader_and_applies_in_the_same_order_everywhere() {
    let c = TestCluster::start(3, 1000);
    let leader = c.leader(&[1, 2, 3]).await;
    let mut events: Vec<_> = (1..=3).map(|id| c.h(id).subscribe_events()).collect();
    // Proposals from every node (followers forward to the leader).
    for i in 0..30u64 {
        let via = 1 + i % 3;
        c.h(via)
            .propose(monitor(&format!("m{i}")))
            .await
            .unwrap_or_else(|e| panic!("proposal {i} via node {via} failed: {e}"));
    }
    let target = c.h(leader).state().applied_index;
    c.wait_applied(&[1, 2, 3], target).await;
    // Background entries (announcements) may still be in flight: compare once all agree.
    let states: Vec<Arc<ClusterState>> = c
        .until("the three states agree", Duration::from_secs(5), || {
            let s: Vec<Arc<ClusterState>> = (1..=3).map(|id| c.h(id).state()).collect();
            (s[0] == s[1] && s[1] == s[2]).then_some(s)
        })
        .await;
    assert_eq!(*states[0], *states[1]);
    assert_eq!(*states[1], *states[2]);
    assert_eq!(states[0].masters.len(), 31, "bootstrap master plus 30");
    assert!(states[0].bootstrapped);
    // Every node saw the same events in the same order at the same indexes.
    let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
    for rx in &mut events {
        let mut v = Vec::new();
        while let Ok(e) = rx.try_recv() {
            if e.event.kind == "+monitor" && e.event.master.as_deref() != Some("mymaster") {
                v.push((e.index, e.event.payload));
            }
        }
        seen.push(v);
    }
    assert_eq!(seen[0].len(), 30);
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    // Announcements reached the state machine.
    let st = c.h(1).state();
    assert_eq!(
        st.members[&2].info.sentinel_addr.as_deref(),
        Some("127.0.0.1:26002")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_minority_cannot_commit_and_catches_up_after_healing() {
    let c = TestCluster::start(3, 1000);
    let leader = c.leader(&[1, 2, 3]).await;
    // What was committed before the cut may still be applying: start from a settled state.
    c.wait_bootstrapped(&[1, 2, 3]).await;
    let minority = if leader == 3 { 1 } else { 3 };
    let majority: Vec<u64> = (1..=3).filter(|id| *id != minority).collect();
    c.net.isolate(minority);
    let before = c.h(minority).state();
    // The minority node cannot get anything committed.
    let r = c
        .h(minority)
        .propose_with_timeout(monitor("lost"), Duration::from_millis(800))
        .await;
    assert!(
        matches!(
            r,
            Err(ProposeError::Timeout(_))
                | Err(ProposeError::NotLeader { .. })
                | Err(ProposeError::LeaderChanged)
        ),
        "{r:?}"
    );
    // The majority still commits.
    for i in 0..10 {
        c.h(majority[i % 2])
            .propose(monitor(&format!("maj{i}")))
            .await
            .unwrap();
    }
    assert_eq!(c.h(minority).state().masters.len(), before.masters.len());
    // Once a lease has passed without contact, it no longer vouches for its state.
    let lease = c.h(minority).lease();
    c.until_true("the minority stops vouching", lease * 2, || {
        !c.h(minority).has_leader_contact()
    })
    .await;
    assert!(c.h(majority[0]).has_leader_contact());
    c.net.heal();
    let target = c.h(majority[0]).state().applied_index;
    c.wait_applied(&[minority], target).await;
    let s = c.h(minority).state();
    assert!(s.masters.contains_key("maj9"));
    assert!(
        !s.masters.contains_key("lost"),
        "an uncommitted proposal must not appear"
    );
    assert_eq!(*s, *c.h(majority[0]).state());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_is_replaced_and_cannot_commit() {
    let c = TestCluster::start(3, 1000);
    let old = c.leader(&[1, 2, 3]).await;
    c.net.isolate(old);
    let rest: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let new = c.leader(&rest).await;
    assert_ne!(new, old);
    let r = c
        .h(old)
        .propose_with_timeout(monitor("from-old"), Duration::from_millis(600))
        .await;
    assert!(r.is_err(), "the old leader committed in a minority: {r:?}");
    c.h(new).propose(monitor("from-new")).await.unwrap();
    // check_quorum: the old leader steps down on its own.
    c.until_true(
        "the isolated leader steps down",
        Duration::from_secs(5),
        || c.h(old).status().role != Role::Leader,
    )
    .await;
    c.net.heal();
    let target = c.h(new).state().applied_index;
    c.wait_applied(&[old], target).await;
    assert!(c.h(old).state().masters.contains_key("from-new"));
    assert!(!c.h(old).state().masters.contains_key("from-old"));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_catches_up_by_snapshot_after_compaction() {
    let c = TestCluster::start(3, 8);
    let leader = c.leader(&[1, 2, 3]).await;
    let lagger = if leader == 2 { 3 } else { 2 };
    c.net.isolate(lagger);
    for i in 0..40 {
        c.h(leader)
            .propose(monitor(&format!("s{i}")))
            .await
            .unwrap();
    }
    let st = c.h(leader).status();
    assert!(
        st.first_index > c.h(lagger).status().last_index + 1,
        "leader log must be compacted past the lagger (first {}, lagger last {})",
        st.first_index,
        c.h(lagger).status().last_index
    );
    c.net.heal();
    let target = c.h(leader).state().applied_index;
    c.wait_applied(&[lagger], target).await;
    assert_eq!(*c.h(lagger).state(), *c.h(leader).state());
    // The lagger's log now starts after the snapshot it installed (status is published
    // right after the state, so wait for it).
    let mut st = c.h(lagger).watch_status();
    tokio::time::timeout(Duration::from_secs(5), st.wait_for(|s| s.first_index > 6))
        .await
        .expect("lagger log should start after the installed snapshot")
        .unwrap();
    // And it keeps working as a normal follower afterwards.
    c.h(lagger).propose(monitor("after")).await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_only_increase_on_every_node() {
    let c = TestCluster::start(3, 1000);
    c.leader(&[1, 2, 3]).await;
    c.wait_bootstrapped(&[1, 2, 3]).await;
    let mut watchers: Vec<_> = (1..=3).map(|id| c.h(id).watch_state()).collect();
    let leader = c.leader(&[1, 2, 3]).await;
    let h = c.h(leader).clone();
    let candidate: Addr = "127.0.0.1:6380".parse().unwrap();
    let mut accepted = Vec::new();
    // Proposals race on purpose: some carry epochs that are stale by the time they apply.
    for round in 0..6u64 {
        let cur = h.state().current_epoch;
        let mut joins = Vec::new();
        for k in 0..3u64 {
            let h = c.h(1 + k).clone();
            let cand = candidate.clone();
            joins.push(tokio::spawn(async move {
                let epoch = cur + 1 + (k + round) % 2;
                let r = h
                    .propose(Command::FailoverStart {
                        master: "mymaster".into(),
                        epoch,
                        candidate: cand,
                        reason: FailoverReason::Forced,
                        leader: 1,
                        at_ms: round,
                    })
                    .await;
                (epoch, r)
            }));
        }
        for j in joins {
            let (epoch, r) = j.await.unwrap();
            match r {
                Ok(_) => accepted.push(epoch),
                Err(ProposeError::Rejected(_)) => {}
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        let epoch = h.state().masters["mymaster"]
            .failover
            .as_ref()
            .map(|f| f.epoch);
        if let Some(epoch) = epoch {
            h.propose(Command::FailoverAbort {
                master: "mymaster".into(),
                epoch,
                why: "test".into(),
                at_ms: round,
            })
            .await
            .unwrap();
        }
    }
    assert!(
        accepted.windows(2).all(|w| w[0] < w[1]),
        "accepted epochs {accepted:?}"
    );
    assert_eq!(accepted.len(), 6, "one start per round: {accepted:?}");
    let target = h.state().applied_index;
    c.wait_applied(&[1, 2, 3], target).await;
    for w in &mut watchers {
        // The latest value on each node equals the last accepted epoch.
        assert_eq!(
            w.borrow_and_update().current_epoch,
            *accepted.last().unwrap()
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_index_fails_fast_without_a_leader_and_succeeds_with_one() {
    let c = TestCluster::start(3, 1000);
    let leader = c.leader(&[1, 2, 3]).await;
    let follower = if leader == 1 { 2 } else { 1 };
    let idx = c
        .h(follower)
        .read_index(Duration::from_secs(2))
        .await
        .unwrap();
    assert!(idx >= c.h(leader).status().commit.min(idx));
    c.net.isolate(follower);
    // Wait until it lost its leader, then reads must fail rather than hang or serve stale.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.h(follower).read_index(Duration::from_millis(300)).await;
        if r.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "an isolated node kept answering linearizable reads"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_forwarded_to_a_lost_leader_fail_fast() {
    let c = TestCluster::start(3, 1000);
    let leader = c.leader(&[1, 2, 3]).await;
    let follower = if leader == 1 { 2 } else { 1 };
    // The leader disappears (its messages are dropped both ways) right before a follower
    // proposes: the proposal is forwarded into the void.
    c.net.isolate(leader);
    let t0 = Instant::now();
    let r = c
        .h(follower)
        .propose_with_timeout(monitor("after-loss"), Duration::from_secs(30))
        .await;
    let took = t0.elapsed();
    assert!(
        matches!(
            r,
            Err(ProposeError::LeaderChanged) | Err(ProposeError::NotLeader { .. })
        ),
        "{r:?}"
    );
    // Answered when the follower noticed the leader change, not after the 30 s timeout.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // A retry commits under the new leader.
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.leader(&rest).await;
    c.h(follower).propose(monitor("after-loss")).await.unwrap();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_node_vouches_only_once_it_has_applied_what_was_committed_meanwhile() {
    let c = TestCluster::start(3, 1000);
    let leader = c.leader(&[1, 2, 3]).await;
    let cut = if leader == 3 { 1 } else { 3 };
    c.until_true(
        &format!("node {cut} vouches before the cut"),
        Duration::from_secs(5),
        || c.h(cut).has_leader_contact(),
    )
    .await;
    c.net.isolate(cut);
    c.until_true(
        &format!("node {cut} stops vouching while cut off"),
        Duration::from_secs(5),
        || !c.h(cut).has_leader_contact(),
    )
    .await;
    // Committed while it is cut off.
    c.h(leader).propose(monitor("while-cut-off")).await.unwrap();
    c.net.heal();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Contact first, then state: the state only grows, so a vouching node must already
        // hold the entry.
        let vouches = c.h(cut).has_leader_contact();
        let has = c.h(cut).state().masters.contains_key("while-cut-off");
        assert!(
            !vouches || has,
            "node {cut} vouched for a state without the committed entry"
        );
        if vouches {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {cut} never vouched again after healing"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    c.stop().await;
}

/// Appends an entry with raw `data` through the leader, as a node of another version would.
fn propose_raw(c: &TestCluster, leader: u64, data: &[u8]) {
    let e = raft::eraftpb::Entry {
        data: data.to_vec().into(),
        ..Default::default()
    };
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
    m.from = leader;
    m.to = leader;
    m.mut_entries().push(e);
    assert!(c.h(leader).step(m), "mailbox full");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_that_cannot_be_decoded_halts_applying_and_is_never_skipped() {
    let c = TestCluster::start(3, 1000);
    let leader = c.leader(&[1, 2, 3]).await;
    c.wait_bootstrapped(&[1, 2, 3]).await;
    c.h(leader).propose(monitor("before")).await.unwrap();
    let first_bad = c.h(leader).status().last_index + 1;
    // A command in a format from a later version, then a valid command after it.
    propose_raw(&c, leader, br#"{"v":99,"cmd":{"op":"from_the_future"}}"#);
    // Both are committed (the log itself is fine) ... The halted leader hands leadership
    // away (which its peers, halted too, refuse) and drops proposals meanwhile: retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (1..=3).any(|id| c.h(id).status().commit < first_bad + 1) {
        assert!(Instant::now() < deadline, "entries not committed");
        if let Some(l) = (1..=3).find(|id| c.h(*id).status().role == Role::Leader) {
            propose_raw(&c, l, &monitor("after").encode());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A negative window: a node that applied past the unreadable entry would do so within it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ... but no node applies past the entry it cannot read, nor vouches for its state.
    for id in 1..=3 {
        let st = c.h(id).state();
        let halted = c.h(id).status().halted.clone();
        let (at, why) = halted.unwrap_or_else(|| panic!("node {id} did not halt"));
        assert!(
            at >= first_bad,
            "node {id} halted at {at}, before {first_bad}"
        );
        assert_eq!(st.applied_index, at - 1, "node {id} applied past {at}");
        assert!(why.contains("version"), "{why}");
        assert!(st.masters.contains_key("before"));
        assert!(
            !st.masters.contains_key("after"),
            "node {id} skipped the entry it cannot decode"
        );
        assert!(!c.h(id).has_leader_contact(), "node {id} still vouches");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reading_only_the_old_format_keeps_the_cluster_on_it_until_upgraded() {
    use raft_sentinel::fsm::{BASE_VERSION, SUPPORTED_VERSION};
    const { assert!(SUPPORTED_VERSION > BASE_VERSION) };
    let net = MemNetwork::new();
    let voters = [1, 2, 3];
    let dirs: Vec<Arc<TempDir>> = (0..3)
        .map(|_| Arc::new(tempfile::tempdir().unwrap()))
        .collect();
    // Nodes 1 and 2 read the newest format; node 3 runs an older version.
    let announced = |id: u64| (id != 3).then_some(SUPPORTED_VERSION);
    let mut nodes = BTreeMap::new();
    for id in voters {
        let dir = dirs[id as usize - 1].clone();
        nodes.insert(
            id,
            start_node_v(&net, id, &voters, dir, 1000, announced(id)),
        );
    }
    let mut c = TestCluster { net, nodes };
    let leader = c.leader(&voters).await;
    c.wait_bootstrapped(&voters).await;
    // Every announcement is applied, and then some (the leader would raise it by now).
    c.until_true("announcements applied", Duration::from_secs(10), || {
        (1..=3).all(|id| {
            c.h(leader).state().members[&id]
                .info
                .sentinel_addr
                .is_some()
        })
    })
    .await;
    // A negative window: the version must not be raised within it.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for id in voters {
        assert_eq!(c.h(id).state().cluster_version(), BASE_VERSION, "node {id}");
    }
    // Nothing in the newer format is written, also when asked for explicitly.
    let err = c
        .h(leader)
        .propose(Command::ClusterVersion {
            version: SUPPORTED_VERSION,
        })
        .await
        .expect_err("a format node 3 cannot read was written");
    assert!(matches!(err, ProposeError::Invalid(_)), "{err}");
    c.h(leader).propose(monitor("old-format")).await.unwrap();
    // A size limit the older version does not have is not enforced either: node 3 applies the
    // entry, so every node must (a refusal on 1 and 2 alone would make them diverge).
    let long = "n".repeat(raft_sentinel::fsm::limits::MAX_NAME_LEN + 1);
    c.h(leader)
        .propose(monitor(&long))
        .await
        .expect("applied as a node of the older format applies it");
    // Nor does a down vote expire: node 3's 20 s old vote completes the quorum, and an ODOWN
    // failover decided on it is accepted, as node 3 accepts it.
    stale_vote_round(&c, leader, "votes-old", 1_000_000, 1).await;
    for id in voters {
        let m = &c.h(id).state().masters["votes-old"];
        assert!(
            m.is_odown(),
            "node {id}: the old vote counts before the upgrade"
        );
        assert!(m.failover.is_some(), "node {id}");
    }

    // Node 3 is upgraded (restarted on its data dir with the new version): the cluster moves on.
    c.upgrade(3, &voters, dirs[2].clone()).await;
    c.until_true(
        "cluster version raised after the upgrade",
        Duration::from_secs(10),
        || (1..=3).all(|id| c.h(id).state().cluster_version() == SUPPORTED_VERSION),
    )
    .await;
    // Every node now reads the format that has the limits: every node enforces them.
    let longer = "o".repeat(raft_sentinel::fsm::limits::MAX_NAME_LEN + 1);
    let leader = c.leader(&voters).await;
    let err = c
        .h(leader)
        .propose(monitor(&longer))
        .await
        .expect_err("over-long name applied after the upgrade");
    assert!(
        matches!(&err, ProposeError::Rejected(r) if r.message.contains("master name is 257 bytes")),
        "{err}"
    );
    let applied = c.h(leader).state().applied_index;
    c.wait_applied(&voters, applied).await;
    for id in voters {
        let st = c.h(id).state();
        assert!(st.masters.contains_key(&long), "node {id}");
        assert!(!st.masters.contains_key(&longer), "node {id}");
    }
    // And down votes expire: the same round no longer reaches ODOWN nor starts a failover.
    let mut events = c.h(leader).subscribe_events();
    stale_vote_round(&c, leader, "votes-new", 2_000_000, 2).await;
    let applied = c.h(leader).state().applied_index;
    c.wait_applied(&voters, applied).await;
    for id in voters {
        let st = c.h(id).state();
        let m = &st.masters["votes-new"];
        assert!(
            !m.is_odown(),
            "node {id}: the old vote expired after the upgrade"
        );
        assert!(m.failover.is_none(), "node {id}");
        assert!(st.masters["votes-old"].failover.is_some(), "node {id}");
    }
    let mut ignored = false;
    while let Ok(ev) = events.try_recv() {
        ignored |= ev.event.kind == "+vote-ignored"
            && ev.event.master.as_deref() == Some("votes-new")
            && ev
                .event
                .payload
                .ends_with("#node 3 expired: last affirmed 20000 ms before, limit 5000 ms");
    }
    assert!(ignored, "no +vote-ignored for node 3's vote");
    c.stop().await;
}

/// On a new master: node 3 votes it down at `t0`, node 1 20 s later (past the 5 s vote
/// lifetime), then a leader decides an ODOWN failover at `epoch`. Returns once every entry is
/// applied on every node; whether the decision was accepted is for the caller to check.
async fn stale_vote_round(c: &TestCluster, leader: u64, master: &str, t0: u64, epoch: u64) {
    c.h(leader).propose(monitor(master)).await.unwrap();
    let addr: Addr = spec(master).addr;
    let observe = |node: u64, at_ms: u64| Command::Observe {
        node,
        master: master.into(),
        addr: addr.clone(),
        down: true,
        reason: ObserveReason::NoReply,
        at_ms,
    };
    c.h(leader).propose(observe(3, t0)).await.unwrap();
    c.h(leader).propose(observe(1, t0 + 20_000)).await.unwrap();
    // Accepted or refused alike on every node: the outcome itself is checked by the caller.
    let _ = c
        .h(leader)
        .propose(Command::FailoverStart {
            master: master.into(),
            epoch,
            candidate: "10.0.0.99:6379".parse().unwrap(),
            reason: FailoverReason::Odown,
            leader,
            at_ms: t0 + 20_100,
        })
        .await;
    let applied = c.h(leader).state().applied_index;
    c.wait_applied(&[1, 2, 3], applied).await;
}

fn forced_start(master: &str, epoch: u64, candidate: &str) -> Command {
    Command::FailoverStart {
        master: master.into(),
        epoch,
        candidate: candidate.parse().unwrap(),
        reason: FailoverReason::Forced,
        leader: 1,
        at_ms: epoch,
    }
}

/// The log index of each of `masters`' `+new-epoch` events received so far.
fn new_epoch_indexes(
    events: &mut tokio::sync::broadcast::Receiver<raft_sentinel::consensus::AppliedEvent>,
    masters: &[&str],
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    while let Ok(ev) = events.try_recv() {
        let m = ev.event.master.clone().unwrap_or_default();
        if ev.event.kind == "+new-epoch" && masters.contains(&m.as_str()) {
            out.insert(m, ev.index);
        }
    }
    out
}

/// Decisions proposed together (as the failover executor does for masters that fail at once)
/// are appended in their order, in one entry once every member reads batches, and each gets
/// its own outcome: consecutive epochs all apply, a stale one alone is refused. Proposed on a
/// follower, they travel to the leader the same way. While a member reads only an older
/// format they are separate entries, still in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_proposed_together_share_one_entry_once_every_member_reads_batches() {
    use raft_sentinel::fsm::{BASE_VERSION, BATCH_VERSION, SUPPORTED_VERSION};
    let net = MemNetwork::new();
    let voters = [1, 2, 3];
    let dirs: Vec<Arc<TempDir>> = (0..3)
        .map(|_| Arc::new(tempfile::tempdir().unwrap()))
        .collect();
    // Node 3 starts as an older version: no batches yet.
    let announced = |id: u64| (id != 3).then_some(SUPPORTED_VERSION);
    let mut nodes = BTreeMap::new();
    for id in voters {
        nodes.insert(
            id,
            start_node_v(
                &net,
                id,
                &voters,
                dirs[id as usize - 1].clone(),
                1000,
                announced(id),
            ),
        );
    }
    let mut c = TestCluster { net, nodes };
    let leader = c.leader(&voters).await;
    c.wait_bootstrapped(&voters).await;
    for m in ["a", "b", "c", "d", "e"] {
        c.h(leader).propose(monitor(m)).await.unwrap();
    }
    assert_eq!(c.h(leader).state().cluster_version(), BASE_VERSION);
    let mut events = c.h(leader).subscribe_events();
    let e = c.h(leader).state().current_epoch;
    let res = c
        .h(leader)
        .propose_all(
            vec![
                forced_start("a", e + 1, "127.0.0.1:7001"),
                forced_start("b", e + 2, "127.0.0.1:7002"),
            ],
            Duration::from_secs(5),
        )
        .await;
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    let at = new_epoch_indexes(&mut events, &["a", "b"]);
    assert_eq!(at.len(), 2, "{at:?}");
    assert_eq!(at["b"], at["a"] + 1, "separate entries, in order: {at:?}");

    // Node 3 is upgraded: the cluster reads batches from now on.
    c.upgrade(3, &voters, dirs[2].clone()).await;
    c.until_true("cluster version raised", Duration::from_secs(10), || {
        (1..=3).all(|id| c.h(id).state().cluster_version() >= BATCH_VERSION)
    })
    .await;
    let leader = c.leader(&voters).await;
    let follower = voters.into_iter().find(|id| *id != leader).unwrap();
    // The proposer's own events: it publishes them before it answers (the leader may apply
    // the entry a moment after the follower does).
    let mut events = c.h(follower).subscribe_events();
    let e = c.h(leader).state().current_epoch;
    let res = c
        .h(follower)
        .propose_all(
            vec![
                forced_start("c", e + 1, "127.0.0.1:7003"),
                forced_start("d", e + 2, "127.0.0.1:7004"),
                forced_start("e", e + 2, "127.0.0.1:7005"), // taken by d: refused
            ],
            Duration::from_secs(5),
        )
        .await;
    assert!(res[0].is_ok() && res[1].is_ok(), "{res:?}");
    assert!(
        matches!(&res[2], Err(ProposeError::Rejected(r)) if r.message.contains("stale epoch")),
        "{res:?}"
    );
    let at = new_epoch_indexes(&mut events, &["c", "d", "e"]);
    assert_eq!(at.len(), 2, "{at:?}");
    assert_eq!(at["c"], at["d"], "one entry: {at:?}");
    let applied = c.h(follower).state().applied_index;
    c.wait_applied(&voters, applied).await;
    for id in voters {
        let st = c.h(id).state();
        assert_eq!(st.current_epoch, e + 2, "node {id}");
        assert!(st.masters["c"].failover.is_some() && st.masters["d"].failover.is_some());
        assert!(st.masters["e"].failover.is_none(), "node {id}");
    }
    c.stop().await;
}
