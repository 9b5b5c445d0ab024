//! A down vote expires: a node that voted the master down and then went away must not lend
//! its vote to a much later, unrelated blip of another node. Each coordinator runs in its own
//! network namespace (root needed) so one of them alone can lose its path to the master.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::netns::{redis_args, NetLab};
use support::wait_for;
use support::BIN;

/// Hosts 0-2 run nodes A, B and C; host 3 runs the master, host 4 its replica.
const A: usize = 0;
const C: usize = 2;
const MASTER: usize = 3;
const REPLICA: usize = 4;

fn ctl_json(lab: &NetLab, endpoints: &str, args: &[&str]) -> Option<serde_json::Value> {
    let flags = ["--endpoint", endpoints, "--timeout-ms", "3000", "--json"];
    let (code, out, _) = lab.ctl(REPLICA, &[&flags[..], args].concat());
    if code != 0 {
        return None;
    }
    serde_json::from_str(&out).ok()
}

/// `redis-cli PSUBSCRIBE *` on a node's Sentinel port, its output in `out`.
fn subscribe(lab: &NetLab, node: usize, out: &Path) -> Child {
    lab.command(REPLICA, "redis-cli")
        .args(["-h", &lab.hosts[node].ip, "-p", "26379", "PSUBSCRIBE", "*"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn down_vote_at(detail: &serde_json::Value, node: u64) -> Option<u64> {
    detail["observations"]
        .as_array()?
        .iter()
        .find(|o| o["node_id"] == node && o["down"] == true)
        .and_then(|o| o["at_ms"].as_u64())
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_nodes_old_down_vote_does_not_complete_a_later_quorum() {
    assert!(
        NetLab::available(),
        "this test needs network namespaces (run the test suite as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lab = NetLab::new(5);
    let master = format!("{}:6379", lab.hosts[MASTER].ip);
    lab.spawn(
        MASTER,
        "redis-server",
        &redis_args(&lab.hosts[MASTER].ip, 6379, &dir.path().join("master"), &[]),
        &dir.path().join("master.log"),
    );
    lab.spawn(
        REPLICA,
        "redis-server",
        &redis_args(
            &lab.hosts[REPLICA].ip,
            6379,
            &dir.path().join("replica"),
            &["--replicaof", &lab.hosts[MASTER].ip, "6379"],
        ),
        &dir.path().join("replica.log"),
    );
    // down_after 1 s: a vote expires max(2 x 1 s, 5 s) = 5 s after its node last affirmed it.
    let mut nodes = Vec::new();
    for i in 0..3 {
        let cfg = lab.node_config(i, dir.path(), &master, "", "failover_timeout_ms = 10000\n");
        nodes.push(lab.spawn(
            i,
            BIN,
            &["run".into(), "--config".into(), cfg.display().to_string()],
            &dir.path().join(format!("node{}.log", i + 1)),
        ));
    }
    let ab = format!("{}:7700,{}:7700", lab.hosts[0].ip, lab.hosts[1].ip);
    let all = format!("{ab},{}:7700", lab.hosts[2].ip);
    wait_for(
        "the master with its replica",
        Duration::from_secs(30),
        || {
            let d = ctl_json(&lab, &all, &["master", "mymaster"])?;
            (d["replicas"].as_array()?.len() == 1).then_some(())
        },
    )
    .await;
    // Votes expire once the cluster version has them (the leader raises it once it has seen
    // every node's announcement); a cluster below it decides as builds without expiry did.
    wait_for(
        "the cluster version with vote expiry",
        Duration::from_secs(15),
        || {
            let v = ctl_json(&lab, &all, &["status"])?["cluster_version"].as_u64()?;
            (v >= u64::from(raft_sentinel::fsm::VOTE_EXPIRY_VERSION)).then_some(())
        },
    )
    .await;
    let mut sub = subscribe(&lab, A, &dir.path().join("events-a.txt"));

    // 1. C loses its path to the master and commits its down vote.
    lab.cut(C, MASTER);
    let voted_at = wait_for("C's committed down vote", Duration::from_secs(15), || {
        down_vote_at(&ctl_json(&lab, &all, &["master", "mymaster"])?, 3)
    })
    .await;
    // 2. C is stopped (powered off for repair) but stays a voter.
    lab.kill(nodes[C]);
    // C re-affirmed its vote every second until it died, and a vote expires counting from
    // its last affirmation: from the kill, not from the first vote seen above (the kill may
    // come seconds after it on a loaded machine).
    let killed_at = wall_ms();
    assert!(killed_at >= voted_at, "the wall clock went back");
    // 3. Much later (past the expiry window), A has a 2-second blip toward the master.
    let window_ms = 5_000;
    let until = killed_at + window_ms + 1_000;
    tokio::time::sleep(Duration::from_millis(until.saturating_sub(wall_ms()))).await;
    lab.cut(A, MASTER);
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.uncut(A, MASTER);
    // Long enough for a failover to have started and been committed if the stale vote counted.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let d = wait_for("master detail from A or B", Duration::from_secs(10), || {
        ctl_json(&lab, &ab, &["master", "mymaster"])
    })
    .await;
    let _ = sub.kill();
    let _ = sub.wait();
    let events = std::fs::read_to_string(dir.path().join("events-a.txt")).unwrap();
    eprintln!("events on A:\n{events}");
    eprintln!("detail: {d}");
    assert_eq!(
        d["master"]["config_epoch"], 0,
        "a healthy master was failed over on a stale vote: {d}"
    );
    assert_eq!(
        d["history"].as_array().map(Vec::len),
        Some(0),
        "no failover may even start: {d}"
    );
    assert!(
        !events.contains("+odown"),
        "the master must not be objectively down: {events}"
    );
    assert!(
        events.contains("+vote-ignored") && events.contains("#node 3 expired"),
        "an event must say that C's vote was ignored and why: {events}"
    );
}
