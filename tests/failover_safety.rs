//! Failover safety with real `redis-server` processes and three real `raft-sentinel` nodes:
//! a failover whose timeout passes after the candidate was promoted, and a coordinator
//! stall that must not read as the master's failure.

mod support;

use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::{
    eventually, follows, get_master, wait_failover_started, wait_monitored, Cluster, ClusterOpts,
    NodeProcess, RedisProcess,
};

/// `down_after_ms` used by these tests.
const DOWN_AFTER: u64 = 500;
/// `failover_timeout_ms` used by these tests.
const FAILOVER_TIMEOUT: u64 = 2000;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster(name: &str, addr: &str, extra: &str) -> Cluster {
    Cluster::start(ClusterOpts {
        tick_ms: 20,
        election_ticks: 10,
        extra_toml: format!(
            "[[masters]]\nname = \"{name}\"\naddr = \"{addr}\"\nquorum = 2\ndown_after_ms = {DOWN_AFTER}\nfailover_timeout_ms = {FAILOVER_TIMEOUT}\nparallel_syncs = 1\n{extra}\n"
        ),
        ..ClusterOpts::default()
    })
}

fn addr_of(reply: &pb::GetMasterReply) -> Option<String> {
    let m = reply.master.as_ref()?;
    Some(format!("{}:{}", m.host, m.port))
}

/// The leader commits a failover, the candidate gets promoted (here by the test, standing
/// in for the leader's REPLICAOF NO ONE), the leader dies and no leader exists for longer
/// than failover_timeout. The next leader must finish that failover, not abort it and start
/// a second one elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_after_the_promotion_finishes_the_failover() {
    let _g = SERIAL.lock().await;
    let user = ["--user", "coord", "on", ">pw", "~*", "&*", "+@all"];
    let auth = ["--masteruser", "coord", "--masterauth", "pw"];
    let mut m = RedisProcess::start(&user);
    let mut args = [&user[..], &auth[..], &["--replica-priority", "10"]].concat();
    let best = RedisProcess::start_replica(&m, &args);
    args.truncate(args.len() - 1);
    args.push("100");
    let other = RedisProcess::start_replica(&m, &args);
    eventually(Duration::from_secs(10), "replicas synced", || async {
        (follows(&best, &m) && follows(&other, &m)).then_some(())
    })
    .await;
    // The leader may not promote the best replica itself: it commits FailoverStart and
    // keeps trying.
    best.acl_setuser("coord", &["-replicaof", "-slaveof"]);
    let mut c = cluster(
        "mymaster",
        &m.addr(),
        "auth_user = \"coord\"\nauth_pass = \"pw\"\n",
    );
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "mymaster", 2).await;

    m.kill9();
    wait_failover_started(c.node(leader), "mymaster").await;
    assert_eq!(best.role().as_deref(), Some("slave"));
    // The leader dies and a second node stalls: no leader.
    let stalled = (1..=3).find(|&i| i != leader).expect("a follower");
    c.node_mut(leader).kill9();
    c.node(stalled).pause();
    // The dead leader's REPLICAOF NO ONE reached the candidate.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut best.client())
        .expect("REPLICAOF NO ONE");
    best.acl_setuser("coord", &["+replicaof", "+slaveof"]);
    // The failover times out while no leader can act on it.
    tokio::time::sleep(Duration::from_millis(FAILOVER_TIMEOUT + 1000)).await;
    c.node(stalled).resume();

    let what = format!("every node reports {} as master", best.addr());
    eventually(Duration::from_secs(10), &what, || async {
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            let r = get_master(n, "mymaster").await?;
            if addr_of(&r)? != best.addr() || r.master.as_ref()?.failover_in_progress {
                return None;
            }
        }
        Some(())
    })
    .await;
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        let r = get_master(n, "mymaster").await.expect("GetMaster");
        assert_eq!(r.current_epoch, 1, "a second failover ran");
    }
    assert_eq!(best.role().as_deref(), Some("master"));
    eventually(
        Duration::from_secs(10),
        "the other replica follows",
        || async { follows(&other, &best).then_some(()) },
    )
    .await;
    m.restart();
    eventually(
        Duration::from_secs(10),
        "the old master is fenced",
        || async { follows(&m, &best).then_some(()) },
    )
    .await;
    assert_eq!(
        best.role().as_deref(),
        Some("master"),
        "the promoted replica was demoted"
    );
}

/// `INFO sentinel` field of a node's Sentinel port.
fn sentinel_info(n: &NodeProcess, field: &str) -> Option<String> {
    let mut c = redis::Client::open(format!("redis://{}/", n.sentinel_addr()))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let text: String = redis::cmd("INFO").arg("sentinel").query(&mut c).ok()?;
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(k, _)| *k == field)
        .map(|(_, v)| v.to_string())
}

/// Every coordinator stalls (SIGSTOP) for 3 x down_after while Redis is healthy. When they
/// resume, their probes' silence is their own: no down vote, no failover, same epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_of_every_coordinator_is_not_a_master_failure() {
    let _g = SERIAL.lock().await;
    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    eventually(Duration::from_secs(10), "replica synced", || async {
        follows(&r1, &m).then_some(())
    })
    .await;
    let c = cluster("mymaster", &m.addr(), "");
    c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "mymaster", 1).await;
    let epoch = get_master(&c.nodes[0], "mymaster")
        .await
        .expect("GetMaster")
        .current_epoch;
    for n in &c.nodes {
        n.pause();
    }
    tokio::time::sleep(Duration::from_millis(3 * DOWN_AFTER)).await;
    for n in &c.nodes {
        n.resume();
    }
    eventually(
        Duration::from_secs(5),
        "every stalled node reports sentinel_tilt:1",
        || async {
            c.nodes
                .iter()
                .all(|n| sentinel_info(n, "sentinel_tilt").as_deref() == Some("1"))
                .then_some(())
        },
    )
    .await;
    // A negative window: a stall read as a master failure would show within it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &c.nodes {
        let log = std::fs::read_to_string(&n.log).unwrap_or_default();
        for l in log
            .lines()
            .filter(|l| l.contains("sdown") || l.contains("tilt"))
        {
            eprintln!("node {}: {l}", n.id);
        }
        for bad in ["+sdown master mymaster", "+odown", "+try-failover"] {
            assert!(
                !log.contains(bad),
                "node {}: {bad} after a stall of the coordinators",
                n.id
            );
        }
        let r = get_master(n, "mymaster").await.expect("GetMaster");
        assert_eq!(r.current_epoch, epoch, "the epoch moved");
        assert_eq!(addr_of(&r).as_deref(), Some(m.addr().as_str()));
    }
    for n in &c.nodes {
        let since: i64 = sentinel_info(n, "sentinel_tilt_since_seconds")
            .and_then(|v| v.parse().ok())
            .expect("sentinel_tilt_since_seconds");
        assert!(since >= 3, "node {}: tilt since {since} s", n.id);
    }
}

/// A stray master that cannot be demoted (the coordinator's ACL lacks REPLICAOF there): the
/// fence keeps failing and must back off instead of committing an entry every second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fence_backs_off() {
    let _g = SERIAL.lock().await;
    let user = ["--user", "coord", "on", ">pw", "~*", "&*", "+@all"];
    let m = RedisProcess::start(&user);
    let args = [&user[..], &["--masteruser", "coord", "--masterauth", "pw"]].concat();
    let r1 = RedisProcess::start_replica(&m, &args);
    eventually(Duration::from_secs(10), "replica synced", || async {
        follows(&r1, &m).then_some(())
    })
    .await;
    let c = cluster(
        "mymaster",
        &m.addr(),
        "auth_user = \"coord\"\nauth_pass = \"pw\"\n",
    );
    c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "mymaster", 1).await;
    r1.acl_setuser("coord", &["-replicaof", "-slaveof"]);
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r1.client())
        .expect("REPLICAOF NO ONE");
    // A counting window: how many fence entries commit in 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = std::fs::read_to_string(&c.nodes[0].log).unwrap_or_default();
    let fences = log
        .lines()
        .filter(|l| l.contains("consensus::node") && l.contains("+convert-to-slave"))
        .count();
    eprintln!("fence entries committed in 10 s: {fences}");
    assert!(fences >= 2, "the fence was not retried ({fences})");
    assert!(
        fences <= 5,
        "the failing fence did not back off: {fences} entries in 10 s"
    );
    assert_eq!(r1.role().as_deref(), Some("master"));
}
