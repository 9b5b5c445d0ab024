//! Failover with real `redis-server` processes and three real `raft-sentinel` nodes:
//! kill -9 and SIGSTOP of the master, quorum, replica priority 0, no eligible replica,
//! leader death in the middle of a failover, and a coordinator minority.

mod support;

use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::{
    eventually, follows, get_master, info_field, offset, wait_failover_started, wait_monitored,
    wait_synced, Cluster, ClusterOpts, NodeProcess, RedisProcess,
};
use tokio::time::Instant;

/// `down_after_ms` used by these tests.
const DOWN_AFTER: u64 = 500;

/// The tests start several processes each and measure timings: one at a time even under
/// `cargo test` (nextest runs them one at a time anyway).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn master_toml(name: &str, addr: &str, quorum: u32, extra: &str) -> String {
    format!(
        "[[masters]]\nname = \"{name}\"\naddr = \"{addr}\"\nquorum = {quorum}\ndown_after_ms = {DOWN_AFTER}\nfailover_timeout_ms = 5000\nparallel_syncs = 1\n{extra}\n"
    )
}

/// A cluster monitoring `m` as `mymaster` with `quorum`, once every node has probed it and
/// its `replicas`.
async fn monitored_cluster(m: &RedisProcess, quorum: u32, replicas: u32) -> Cluster {
    let c = cluster(master_toml("mymaster", &m.addr(), quorum, ""));
    c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "mymaster", replicas).await;
    c
}

fn cluster(masters_toml: String) -> Cluster {
    Cluster::start(ClusterOpts {
        tick_ms: 20,
        election_ticks: 10,
        extra_toml: masters_toml,
        ..ClusterOpts::default()
    })
}

/// Points a replica at a port nobody listens on: it stays a replica, with its offset frozen.
fn detach(r: &RedisProcess) {
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(support::free_port())
        .query(&mut r.client())
        .expect("REPLICAOF");
}

/// Whether `r` is a replica configured to follow `master` (link possibly still syncing).
fn points_to(r: &RedisProcess, master: &RedisProcess) -> bool {
    r.role().as_deref() == Some("slave")
        && info_field(r, "replication", "master_port").as_deref() == Some(&master.port.to_string())
}

/// `CONFIG GET key`; None when the instance does not answer (it may be restarting, or
/// dropping its clients while it is demoted).
fn config_get(r: &RedisProcess, key: &str) -> Option<String> {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(key)
        .query(&mut r.try_client()?)
        .ok()?;
    v.get(1).cloned()
}

fn config_set(r: &RedisProcess, key: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query(&mut r.client())
        .expect("CONFIG SET");
}

/// Redis started with disk-based sync: it starts a full sync the moment a replica asks, its
/// worst case (the default diskless delay of 5 s would hide a missing hold).
const DISK_SYNC: [&str; 2] = ["--repl-diskless-sync", "no"];

/// The delay a coordinator sets while it holds an empty master's full syncs.
const HOLD_DELAY: &str = "117";

/// Resumes failovers of `mymaster` through any running node. Retried for up to 10 s: an
/// election may be under way (a killed node, a loaded machine), and a node without a leader
/// refuses the proposal.
async fn resume_failovers(c: &Cluster) {
    eventually(Duration::from_secs(10), "failovers resumed", || async {
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            let Ok(mut grpc) = n.client().await else {
                continue;
            };
            let req = pb::ResumeRequest {
                name: "mymaster".into(),
            };
            if grpc.resume(req).await.is_ok() {
                return Some(());
            }
        }
        None
    })
    .await
}

/// Pauses failovers of `mymaster`, then kills the master and brings it back empty well
/// before down_after: only the restart detection can save the replicas' data.
/// Returns once the hold is on, with the client that can resume failovers.
///
/// A replica retries its master once a second (Redis's replication cron), and with
/// disk-based sync the first retry that reaches the restarted master wipes it: the hold
/// must be on before then. The restart is timed from the replicas' refused retries so that
/// the next one is at least half a second away (the widest gap between their retry phases):
/// what is tested is that the hold comes within that time, not where in its once-a-second
/// cycle a replica happened to be. (In production the hold closes the window for every
/// replica whose retry comes after it, as the README says.)
async fn restart_empty_while_paused(
    c: &Cluster,
    m: &mut RedisProcess,
    replicas: &[&RedisProcess],
) -> support::ApiClient {
    let mut grpc = c.nodes[0].client().await.expect("gRPC client");
    grpc.pause(pb::PauseRequest {
        name: "mymaster".into(),
    })
    .await
    .expect("Pause");
    let before: Vec<usize> = replicas.iter().map(|r| master_retries(r)).collect();
    m.kill9();
    // Each replica's first refused retry after the kill: its phase in the 1 s cycle.
    let mut first = vec![None; replicas.len()];
    let t_kill = Instant::now();
    while first.iter().any(Option::is_none) {
        assert!(
            t_kill.elapsed() < Duration::from_secs(5),
            "a replica never retried its dead master"
        );
        for (i, r) in replicas.iter().enumerate() {
            if first[i].is_none() && master_retries(r) > before[i] {
                first[i] = Some(t_kill.elapsed().as_millis() as u64 % 1000);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Restart right after the retry that opens the widest gap before the next one.
    let phases: Vec<u64> = first.into_iter().map(|p| p.expect("seen")).collect();
    let after = (0..phases.len())
        .max_by_key(|&i| {
            phases
                .iter()
                .map(|&q| (q + 1000 - phases[i] - 1) % 1000 + 1)
                .min()
                .expect("one phase")
        })
        .unwrap_or(0);
    eprintln!("replicas' retry phases after the kill (ms of the 1 s cycle): {phases:?}");
    if let Some(r) = replicas.get(after) {
        let seen = master_retries(r);
        let t = Instant::now();
        while master_retries(r) == seen {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "a replica stopped retrying"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    m.restart();
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(5),
        "full syncs held on the empty master",
        || async {
            (config_get(m, "repl-diskless-sync-delay").as_deref() == Some(HOLD_DELAY)).then_some(())
        },
    )
    .await;
    eprintln!("empty restart to hold: {:?}", t0.elapsed());
    grpc
}

/// How many times a replica has tried to connect to its master, from its log.
fn master_retries(r: &RedisProcess) -> usize {
    r.log_text().matches("Connecting to MASTER").count()
}

/// Waits until the hold is released: the disk-based sync settings of [`DISK_SYNC`] are back.
async fn wait_sync_settings_restored(m: &RedisProcess, limit: Duration) {
    eventually(limit, "sync settings restored", || async {
        (config_get(m, "repl-diskless-sync-delay").as_deref() == Some("5")
            && config_get(m, "repl-diskless-sync").as_deref() == Some("no"))
        .then_some(())
    })
    .await;
}

fn dbsize(r: &RedisProcess) -> i64 {
    redis::cmd("DBSIZE").query(&mut r.client()).expect("DBSIZE")
}

fn write_keys(r: &RedisProcess, prefix: &str, n: usize) {
    let mut c = r.client();
    for i in 0..n {
        let _: () = redis::cmd("SET")
            .arg(format!("{prefix}:{i}"))
            .arg(i)
            .query(&mut c)
            .expect("SET on the master");
    }
}

/// Times `r` received a command, from `INFO commandstats` (0 if never).
fn calls(r: &RedisProcess, cmd: &str) -> u64 {
    let Some(v) = info_field(r, "commandstats", &format!("cmdstat_{cmd}")) else {
        return 0;
    };
    v.split(',')
        .find_map(|kv| kv.strip_prefix("calls="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn addr_of(reply: &pb::GetMasterReply) -> Option<(String, u16, u64)> {
    let m = reply.master.as_ref()?;
    Some((
        format!("{}:{}", m.host, m.port),
        m.port as u16,
        m.config_epoch,
    ))
}

/// Waits until every running node answers `addr` for `name`; returns the config epoch.
async fn wait_all_agree(c: &Cluster, name: &str, addr: &str, limit: Duration) -> u64 {
    let what = format!("every node reports {addr} as master of {name}");
    eventually(limit, &what, || async {
        let mut epoch = None;
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            let r = get_master(n, name).await?;
            let (a, _, e) = addr_of(&r)?;
            if a != addr || epoch.is_some_and(|x| x != e) {
                return None;
            }
            epoch = Some(e);
        }
        epoch
    })
    .await
}

/// Prints the failover milestones of every node's log (for timing analysis with --nocapture).
fn print_timeline(c: &Cluster) {
    for n in &c.nodes {
        let text = std::fs::read_to_string(&n.log).unwrap_or_default();
        for l in text.lines().filter(|l| {
            [
                "sdown (local)",
                "+odown",
                "+try-failover",
                "+switch-master",
                "convert-to-slave",
            ]
            .iter()
            .any(|k| l.contains(k))
        }) {
            eprintln!("node {}: {}", n.id, strip_ansi(l));
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for ch in s.chars() {
        match (esc, ch) {
            (false, '\x1b') => esc = true,
            (true, 'm') => esc = false,
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    out
}

fn grep_logs(c: &Cluster, needle: &str) -> bool {
    c.nodes
        .iter()
        .any(|n| std::fs::read_to_string(&n.log).is_ok_and(|s| s.contains(needle)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_master_promotes_most_up_to_date_replica_and_old_master_rejoins() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &["--replica-priority", "100"]);
    let r2 = RedisProcess::start_replica(&m, &["--replica-priority", "100"]);
    wait_synced(&m, &[&r1, &r2]).await;
    let c = monitored_cluster(&m, 2, 2).await;

    write_keys(&m, "a", 100);
    wait_synced(&m, &[&r1, &r2]).await;
    // r2 misses the next writes: r1 is then strictly more up to date. (SIGSTOP would not
    // do: the writes wait in r2's socket buffer and it reads them after SIGCONT.)
    detach(&r2);
    write_keys(&m, "b", 100);
    eventually(Duration::from_secs(5), "r1 has every write", || async {
        (offset(&r1)? == offset(&m)?).then_some(())
    })
    .await;
    let t0 = Instant::now();
    m.kill9();

    let epoch = wait_all_agree(&c, "mymaster", &r1.addr(), Duration::from_secs(10)).await;
    let took = t0.elapsed();
    eprintln!("kill -9 to every node switched: {took:?} (down_after {DOWN_AFTER} ms)");
    assert_eq!(
        epoch, 1,
        "exactly one promotion: the first failover takes epoch 1"
    );
    for n in &c.nodes {
        let r = get_master(n, "mymaster").await.expect("GetMaster");
        assert_eq!(r.current_epoch, 1, "node {} saw more than one epoch", n.id);
    }
    assert_eq!(r1.role().as_deref(), Some("master"));
    assert_eq!(dbsize(&r1), 200, "the promoted replica has every write");

    eventually(
        Duration::from_secs(10),
        "the other replica follows the new master",
        || async { follows(&r2, &r1).then_some(()) },
    )
    .await;
    assert_eq!(r2.role().as_deref(), Some("slave"));

    // The old master comes back empty (no persistence): it must become a replica of the new
    // master, and must not wipe anyone.
    m.restart();
    let t1 = Instant::now();
    eventually(
        Duration::from_secs(3),
        "the restarted old master is a replica of the new one",
        || async { points_to(&m, &r1).then_some(()) },
    )
    .await;
    eprintln!("restarted old master repointed after {:?}", t1.elapsed());
    assert_eq!(dbsize(&r1), 200, "the new master kept its data");
    eventually(
        Duration::from_secs(15),
        "the old master resynced",
        || async { (follows(&m, &r1) && dbsize(&m) == 200).then_some(()) },
    )
    .await;
    let again = wait_all_agree(&c, "mymaster", &r1.addr(), Duration::from_secs(2)).await;
    assert_eq!(again, 1, "no second failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_master_fails_over_and_is_demoted_after_sigcont() {
    let _g = serial().await;
    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    let r2 = RedisProcess::start_replica(&m, &[]);
    wait_synced(&m, &[&r1, &r2]).await;
    let c = monitored_cluster(&m, 2, 2).await;

    m.pause();
    let t0 = Instant::now();
    let new = eventually(Duration::from_secs(10), "a replica is promoted", || async {
        let r = get_master(&c.nodes[0], "mymaster").await?;
        let (a, _, _) = addr_of(&r)?;
        (a != m.addr()).then_some(a)
    })
    .await;
    let epoch = wait_all_agree(&c, "mymaster", &new, Duration::from_secs(5)).await;
    eprintln!("SIGSTOP to switch: {:?}", t0.elapsed());
    print_timeline(&c);
    assert_eq!(epoch, 1);
    let (promoted, other) = if new == r1.addr() {
        (&r1, &r2)
    } else {
        (&r2, &r1)
    };
    assert_eq!(promoted.role().as_deref(), Some("master"));

    // Held stopped well past the failover, like a long GC pause or a frozen VM.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    m.resume();
    let t1 = Instant::now();
    eventually(
        Duration::from_secs(3),
        "the resumed old master is demoted",
        || async { (m.role().as_deref() == Some("slave")).then_some(()) },
    )
    .await;
    let demoted = t1.elapsed();
    eprintln!("SIGCONT to demoted: {demoted:?}");
    assert!(
        demoted < Duration::from_secs(1),
        "demotion took {demoted:?}"
    );

    // The demotion was a committed decision: every node applied and logged the event.
    let details = format!("+convert-to-slave slave {}", m.addr());
    for n in &c.nodes {
        eventually(
            Duration::from_secs(5),
            "every node logs +convert-to-slave",
            || async {
                std::fs::read_to_string(&n.log)
                    .is_ok_and(|s| s.contains(&details))
                    .then_some(())
            },
        )
        .await;
    }

    // From then on exactly one writable master.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let masters = [&m, &r1, &r2]
            .iter()
            .filter(|r| r.role().as_deref() == Some("master"))
            .count();
        assert_eq!(masters, 1, "more than one master after the demotion");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually(
        Duration::from_secs(10),
        "everyone follows the new master",
        || async { (follows(&m, promoted) && follows(other, promoted)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_than_quorum_nodes_seeing_it_down_means_no_failover() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    wait_synced(&m, &[&r1]).await;
    // Quorum 3 of 3 nodes, with one node stopped: at most two can say down.
    let mut c = monitored_cluster(&m, 3, 1).await;
    c.node_mut(3).kill9();
    c.wait_leader(Duration::from_secs(10)).await;

    m.kill9();
    // A negative window: with quorum, a failover would have started well within it.
    tokio::time::sleep(Duration::from_millis(DOWN_AFTER * 6)).await;
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        let r = get_master(n, "mymaster").await.expect("GetMaster");
        let (a, _, e) = addr_of(&r).expect("master");
        assert_eq!(a, m.addr(), "node {} moved the master without quorum", n.id);
        assert_eq!(e, 0);
        assert!(!r.master.as_ref().unwrap().odown, "ODOWN with 2 of 3 votes");
    }
    assert_eq!(r1.role().as_deref(), Some("slave"));
    assert_eq!(calls(&r1, "replicaof"), 0, "nothing may be sent to Redis");

    // The third node's vote completes the quorum: the failover happens. This shows the test
    // above was waiting for the right thing.
    c.node_mut(3).spawn();
    let epoch = wait_all_agree(&c, "mymaster", &r1.addr(), Duration::from_secs(15)).await;
    assert_eq!(epoch, 1);
    m.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_zero_is_never_promoted_and_no_eligible_replica_aborts() {
    let _g = serial().await;
    // m1 has a priority-0 replica with more data, and a normal one.
    let m1 = RedisProcess::start(&[]);
    let r1_zero = RedisProcess::start_replica(&m1, &["--replica-priority", "0"]);
    let r1_ok = RedisProcess::start_replica(&m1, &["--replica-priority", "100"]);
    // m2 has only a priority-0 replica.
    let m2 = RedisProcess::start(&[]);
    let r2_zero = RedisProcess::start_replica(&m2, &["--replica-priority", "0"]);
    wait_synced(&m1, &[&r1_zero, &r1_ok]).await;
    wait_synced(&m2, &[&r2_zero]).await;
    let toml = master_toml("m1", &m1.addr(), 2, "") + &master_toml("m2", &m2.addr(), 2, "");
    let c = cluster(toml);
    c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "m1", 2).await;
    wait_monitored(&c, "m2", 1).await;

    write_keys(&m1, "k", 50);
    wait_synced(&m1, &[&r1_zero]).await;
    // The priority-0 replica is the most up to date; it must still not be chosen.
    detach(&r1_ok);
    write_keys(&m1, "late", 50);
    wait_synced(&m1, &[&r1_zero]).await;
    let mut m1 = m1;
    let mut m2 = m2;
    m1.kill9();
    m2.kill9();

    let e1 = wait_all_agree(&c, "m1", &r1_ok.addr(), Duration::from_secs(10)).await;
    assert_eq!(e1, 1);
    // Not `Some("slave")`: repointed to the new master right now, it may be loading the full
    // sync and answer ROLE with -LOADING.
    assert_ne!(
        r1_zero.role().as_deref(),
        Some("master"),
        "priority 0 was promoted"
    );
    eventually(
        Duration::from_secs(10),
        "the priority-0 replica follows the new master",
        || async { follows(&r1_zero, &r1_ok).then_some(()) },
    )
    .await;

    // m2: aborted with the reason, nothing changed.
    eventually(
        Duration::from_secs(10),
        "the abort is logged with its reason",
        || async { grep_logs(&c, "no-good-slave").then_some(()) },
    )
    .await;
    assert!(
        grep_logs(&c, "replica-priority 0"),
        "the reason names the exclusion"
    );
    // A negative window: nothing may change after the abort.
    tokio::time::sleep(Duration::from_millis(DOWN_AFTER * 2)).await;
    for n in &c.nodes {
        let r = get_master(n, "m2").await.expect("GetMaster");
        let (a, _, e) = addr_of(&r).expect("master");
        assert_eq!(
            (a.as_str(), e),
            (m2.addr().as_str(), 0),
            "m2 changed on node {}",
            n.id
        );
    }
    assert_eq!(r2_zero.role().as_deref(), Some("slave"));
    assert_eq!(
        calls(&r2_zero, "replicaof"),
        0,
        "nothing was sent to the only replica"
    );
    m1.restart();
    m2.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_failover_next_leader_completes_same_epoch() {
    let _g = serial().await;
    // The coordinator's ACL user may not run REPLICAOF on the best replica, so the first
    // leader commits FailoverStart but cannot promote; it is then killed.
    let acl = ["--user", "coord", "on", ">pw", "~*", "&*", "+@all"];
    let mut m = RedisProcess::start(&acl);
    let mut best_args = acl.to_vec();
    best_args.extend([
        "--replica-priority",
        "10",
        "--masteruser",
        "coord",
        "--masterauth",
        "pw",
    ]);
    let best = RedisProcess::start_replica(&m, &best_args);
    let mut other_args = acl.to_vec();
    other_args.extend([
        "--replica-priority",
        "100",
        "--masteruser",
        "coord",
        "--masterauth",
        "pw",
    ]);
    let other = RedisProcess::start_replica(&m, &other_args);
    wait_synced(&m, &[&best, &other]).await;
    best.acl_setuser("coord", &["-replicaof", "-slaveof"]);

    let mut c = cluster(master_toml(
        "mymaster",
        &m.addr(),
        2,
        "auth_user = \"coord\"\nauth_pass = \"pw\"\n",
    ));
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "mymaster", 2).await;

    m.kill9();
    wait_failover_started(c.node(leader), "mymaster").await;
    // A negative window: the promotion the ACL refuses must not happen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        best.role().as_deref(),
        Some("slave"),
        "the ACL should block the promotion"
    );
    c.node_mut(leader).kill9();
    eventually(Duration::from_secs(10), "a new leader", || async {
        let mut seen = None;
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            let l = n.status().await?.leader_id;
            if l == 0 || l == leader || seen.is_some_and(|s| s != l) {
                return None;
            }
            seen = Some(l);
        }
        seen
    })
    .await;
    // Now the promotion is allowed: the new leader finishes the same failover.
    best.acl_setuser("coord", &["+replicaof", "+slaveof"]);
    let epoch = wait_all_agree(&c, "mymaster", &best.addr(), Duration::from_secs(10)).await;
    assert_eq!(epoch, 1, "the new leader completed the failover of epoch 1");
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        let r = get_master(n, "mymaster").await.expect("GetMaster");
        assert_eq!(r.current_epoch, 1, "a second epoch was taken");
    }
    assert_eq!(other.role().as_deref(), Some("slave"), "two promotions");
    m.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_without_majority_send_nothing_to_redis() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    wait_synced(&m, &[&r1]).await;
    let mut c = monitored_cluster(&m, 1, 1).await;
    c.node_mut(2).kill9();
    c.node_mut(3).kill9();
    for r in [&m, &r1] {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut r.client())
            .expect("RESETSTAT");
    }
    m.kill9();
    // A negative window: a lone node (no quorum) must send no reconfiguring command.
    tokio::time::sleep(Duration::from_millis(DOWN_AFTER * 6)).await;
    assert_eq!(r1.role().as_deref(), Some("slave"));
    for cmd in [
        "replicaof",
        "slaveof",
        "failover",
        "client|kill",
        "client|pause",
        "config|rewrite",
        "config|set",
    ] {
        assert_eq!(
            calls(&r1, cmd),
            0,
            "{cmd} was sent by a node without a majority"
        );
    }
    let r = get_master(c.node(1), "mymaster").await.expect("GetMaster");
    assert_eq!(addr_of(&r).expect("master").0, m.addr());
    m.restart();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_on_an_empty_master_ends_when_no_failover_comes() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&DISK_SYNC);
    let r1 = RedisProcess::start_replica(&m, &DISK_SYNC);
    wait_synced(&m, &[&r1]).await;
    let c = monitored_cluster(&m, 2, 1).await;
    write_keys(&m, "acked", 100);
    wait_synced(&m, &[&r1]).await;
    let _grpc = restart_empty_while_paused(&c, &mut m, &[&r1]).await;
    // Failovers stay paused: the empty-restart failure is given up after failover_timeout
    // (5 s) and the master gets its own settings back and takes writes again.
    let t0 = Instant::now();
    wait_sync_settings_restored(&m, Duration::from_secs(10)).await;
    eprintln!("hold released after {:?}", t0.elapsed());
    let mut w = m.client();
    w.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query(&mut w)
        .expect("the master takes writes once the hold is released");
    let r = get_master(&c.nodes[0], "mymaster")
        .await
        .expect("GetMaster");
    assert_eq!(addr_of(&r).expect("master").0, m.addr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_left_on_a_replica_is_reset() {
    let _g = serial().await;
    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    wait_synced(&m, &[&r1]).await;
    // What a node that held the syncs and died before releasing them leaves behind.
    config_set(&r1, "repl-diskless-sync-delay", HOLD_DELAY);
    let _c = monitored_cluster(&m, 2, 1).await;
    eventually(
        Duration::from_secs(10),
        "the orphaned hold reset to Redis's default",
        || async {
            (config_get(&r1, "repl-diskless-sync-delay").as_deref() == Some("5")).then_some(())
        },
    )
    .await;
    // A delay that is not the hold's is the operator's and stays (a negative window).
    config_set(&m, "repl-diskless-sync-delay", "0");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        config_get(&m, "repl-diskless-sync-delay").as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_restarted_empty_does_not_wipe_its_replicas() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&DISK_SYNC);
    let r1 = RedisProcess::start_replica(&m, &DISK_SYNC);
    let r2 = RedisProcess::start_replica(&m, &DISK_SYNC);
    wait_synced(&m, &[&r1, &r2]).await;
    let c = monitored_cluster(&m, 2, 2).await;
    write_keys(&m, "acked", 300);
    wait_synced(&m, &[&r1, &r2]).await;
    // Failovers paused: for now the hold alone must keep the replicas' data.
    let _grpc = restart_empty_while_paused(&c, &mut m, &[&r1, &r2]).await;
    // The replicas reconnect and ask for a full sync within a second; it must not start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(dbsize(&r1), 300, "a replica resynced from the empty master");
    assert_eq!(dbsize(&r2), 300, "a replica resynced from the empty master");
    // Nor does the empty master acknowledge a write it would lose when it is demoted.
    let mut w = m.client();
    w.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let r: redis::RedisResult<()> = redis::cmd("SET").arg("unsafe").arg(1).query(&mut w);
    assert!(r.is_err(), "the held empty master acknowledged a write");

    let t1 = Instant::now();
    resume_failovers(&c).await;
    let new = eventually(Duration::from_secs(10), "a replica is promoted", || async {
        let r = get_master(&c.nodes[0], "mymaster").await?;
        let (a, _, _) = addr_of(&r)?;
        (a != m.addr()).then_some(a)
    })
    .await;
    eprintln!("resume to switch: {:?}", t1.elapsed());
    print_timeline(&c);
    let epoch = wait_all_agree(&c, "mymaster", &new, Duration::from_secs(5)).await;
    assert_eq!(epoch, 1);
    let promoted = if new == r1.addr() { &r1 } else { &r2 };
    let other = if new == r1.addr() { &r2 } else { &r1 };
    assert_eq!(
        dbsize(promoted),
        300,
        "the promoted replica lost acknowledged writes"
    );
    eventually(
        Duration::from_secs(15),
        "everyone resynced from the promoted replica",
        || async {
            (follows(&m, promoted)
                && follows(other, promoted)
                && dbsize(&m) == 300
                && dbsize(other) == 300)
                .then_some(())
        },
    )
    .await;
    assert_eq!(dbsize(promoted), 300);
    // Once it is a replica the hold is released: its own settings are back.
    wait_sync_settings_restored(&m, Duration::from_secs(5)).await;
}

/// Microseconds since midnight (UTC) of the first line of `n`'s log containing `needle`.
fn log_time_us(n: &NodeProcess, needle: &str) -> Option<u64> {
    let text = std::fs::read_to_string(&n.log).ok()?;
    let line = text.lines().map(strip_ansi).find(|l| l.contains(needle))?;
    // `2026-11-30T02:21:42.123456Z  WARN ...`
    let stamp = line.split_whitespace().next()?;
    let clock = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let secs: f64 = parts.next()?.parse().ok()?;
    Some((h * 3600 + m * 60) * 1_000_000 + (secs * 1e6).round() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_restart_is_held_at_once_within_the_lease_without_a_majority_read() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&DISK_SYNC);
    let r1 = RedisProcess::start_replica(&m, &DISK_SYNC);
    wait_synced(&m, &[&r1]).await;
    // A 4 s election timeout, so a lease of almost 4 s: long enough that the leader still
    // holds it when it sees the restart, on a loaded machine too, after both followers stop.
    let c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        election_ticks: 200,
        extra_toml: master_toml("mymaster", &m.addr(), 2, ""),
        ..ClusterOpts::default()
    });
    let leader = c.wait_leader(Duration::from_secs(30)).await;
    wait_monitored(&c, "mymaster", 1).await;
    write_keys(&m, "acked", 100);
    wait_synced(&m, &[&r1]).await;
    let mut grpc = c.node(leader).client().await.expect("gRPC client");
    grpc.pause(pb::PauseRequest {
        name: "mymaster".into(),
    })
    .await
    .expect("Pause");
    eventually(
        Duration::from_secs(10),
        "the leader holds its lease",
        || async {
            c.node(leader)
                .status()
                .await
                .filter(|s| s.leader_contact)
                .map(|_| ())
        },
    )
    .await;
    m.kill9();
    // No ReadIndex can complete now: the leader alone is left of three. Its lease lasts
    // at least three quarters of it (a round renews it every quarter).
    for n in c.nodes.iter().filter(|n| n.id != leader) {
        n.pause();
    }
    let stopped = Instant::now();
    m.restart();
    let ready = stopped.elapsed();
    eventually(
        Duration::from_secs(2),
        "full syncs held on the empty master without a majority read",
        || async {
            (config_get(&m, "repl-diskless-sync-delay").as_deref() == Some(HOLD_DELAY))
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "followers stopped to restart ready: {ready:?}; to hold seen: {:?}",
        stopped.elapsed()
    );
    let n = c.node(leader);
    let seen = log_time_us(n, "master restarted with an empty dataset").expect("restart seen");
    let held = log_time_us(n, "held full syncs from the empty master").expect("hold logged");
    let gap_ms = (held + 86_400_000_000 - seen) % 86_400_000_000 / 1000;
    eprintln!("restart seen to hold set: {gap_ms} ms");
    assert!(
        grep_logs(&c, "confirmed_by=\"lease\""),
        "the hold was not set under the lease"
    );
    // Two commands to the restarted master (CONFIG GET, CONFIG SET) and nothing else: a
    // ReadIndex could not even have been answered.
    assert!(
        gap_ms < 150,
        "the hold came {gap_ms} ms after the restart was seen"
    );
    for n in c.nodes.iter().filter(|n| n.id != leader) {
        n.resume();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_restart_is_seen_when_the_keys_were_only_in_db_3() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&DISK_SYNC);
    let r1 = RedisProcess::start_replica(&m, &DISK_SYNC);
    wait_synced(&m, &[&r1]).await;
    let c = monitored_cluster(&m, 2, 1).await;
    let mut w = m.client();
    let _: () = redis::cmd("SELECT").arg(3).query(&mut w).expect("SELECT");
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut w)
            .expect("SET");
    }
    drop(w);
    wait_synced(&m, &[&r1]).await;
    assert_eq!(dbsize(&m), 0, "db 0 must stay empty for this test");
    // Failovers paused: the hold alone keeps the replica's data.
    let _grpc = restart_empty_while_paused(&c, &mut m, &[&r1]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keys = info_field(&r1, "keyspace", "db3").and_then(|v| {
        v.split(',')
            .find_map(|kv| kv.strip_prefix("keys=").map(str::to_string))
    });
    assert_eq!(
        keys.as_deref(),
        Some("200"),
        "the replica resynced from the empty master"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_users_sync_settings_come_back_when_the_holds_owner_dies() {
    let _g = serial().await;
    // Settings of the user's own, neither the hold's nor Redis's defaults.
    let user = [
        "--repl-diskless-sync",
        "no",
        "--repl-diskless-sync-delay",
        "3",
    ];
    let mut m = RedisProcess::start(&user);
    let r1 = RedisProcess::start_replica(&m, &user);
    wait_synced(&m, &[&r1]).await;
    let mut c = monitored_cluster(&m, 2, 1).await;
    write_keys(&m, "acked", 100);
    wait_synced(&m, &[&r1]).await;
    let _grpc = restart_empty_while_paused(&c, &mut m, &[&r1]).await;
    let holders = || -> Vec<u64> {
        c.nodes
            .iter()
            .filter(|n| {
                std::fs::read_to_string(&n.log)
                    .is_ok_and(|s| s.contains("holding full syncs from the empty master"))
            })
            .map(|n| n.id)
            .collect()
    };
    // The owner logs it once its record is committed, just after the hold is set.
    eventually(Duration::from_secs(2), "the hold's owner known", || async {
        (!holders().is_empty()).then_some(())
    })
    .await;
    // A negative window: a second node claiming the hold would log it within it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let holders = holders();
    // One owner: the node whose record of the settings was committed first.
    assert_eq!(holders.len(), 1, "nodes holding the syncs: {holders:?}");
    let owner = holders[0];
    c.node_mut(owner).kill9();
    let t0 = Instant::now();
    // The two others fail the empty master over and demote it; the hold ends there. The
    // resume commits once they have a leader again.
    resume_failovers(&c).await;
    eventually(
        Duration::from_secs(15),
        "the user's sync settings restored on the old master",
        || async {
            (config_get(&m, "repl-diskless-sync-delay").as_deref() == Some("3")
                && config_get(&m, "repl-diskless-sync").as_deref() == Some("no"))
            .then_some(())
        },
    )
    .await;
    eprintln!("owner killed to settings restored: {:?}", t0.elapsed());
    assert!(
        grep_logs(
            &c,
            "restored the sync settings of an instance whose hold ended"
        ),
        "a surviving node restores them"
    );
    print_timeline(&c);
    assert_eq!(dbsize(&r1), 100, "the replica lost acknowledged writes");
    // Restored for good: nothing writes defaults over them later.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        config_get(&m, "repl-diskless-sync-delay").as_deref(),
        Some("3")
    );
    assert_eq!(config_get(&m, "repl-diskless-sync").as_deref(), Some("no"));
}

/// The `error=` part of every WARN "probe error" line a node logged for `master`.
fn probe_error_lines(n: &NodeProcess, master: &str) -> Vec<String> {
    let span = format!("master={master} ");
    std::fs::read_to_string(&n.log)
        .unwrap_or_default()
        .lines()
        .map(strip_ansi)
        .filter(|l| l.contains(" WARN ") && l.contains(&span) && l.contains("probe error"))
        .map(|l| {
            l.split_once("error=")
                .map_or(l.clone(), |(_, e)| e.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_probe_error_is_logged_once() {
    let _g = serial().await;
    // A password the coordinators do not know (as after a password change): every PING and
    // INFO gets NOAUTH. And an address where nothing listens.
    let locked = RedisProcess::start(&["--requirepass", "changed-password"]);
    let dead = format!("127.0.0.1:{}", support::free_port());
    let toml = master_toml("locked", &locked.addr(), 2, "") + &master_toml("dead", &dead, 2, "");
    let c = cluster(toml);
    c.wait_leader(Duration::from_secs(20)).await;
    support::wait_for(
        "every node reports both probe errors",
        Duration::from_secs(15),
        || {
            c.nodes
                .iter()
                .all(|n| {
                    !probe_error_lines(n, "locked").is_empty()
                        && !probe_error_lines(n, "dead").is_empty()
                })
                .then_some(())
        },
    )
    .await;
    // The probes keep failing every ping period (a third of down_after, 166 ms here): 18
    // rounds and more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &c.nodes {
        for master in ["locked", "dead"] {
            let lines = probe_error_lines(n, master);
            let mut distinct = lines.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                lines.len(),
                distinct.len(),
                "node {} logged {} probe error lines of {master}, {} distinct: {distinct:?}",
                n.id,
                lines.len(),
                distinct.len()
            );
        }
        assert!(
            probe_error_lines(n, "locked")
                .iter()
                .any(|e| e.contains("NOAUTH")),
            "node {} did not report NOAUTH",
            n.id
        );
    }
}

/// Committed `-failover-abort-no-good-slave` events of `master` that node `n` applied.
fn committed_aborts(n: &NodeProcess, master: &str) -> usize {
    let field = format!("master=\"{master}\"");
    std::fs::read_to_string(&n.log)
        .unwrap_or_default()
        .lines()
        .map(strip_ansi)
        .filter(|l| {
            l.contains("consensus::node")
                && l.contains("-failover-abort-no-good-slave")
                && l.contains(&field)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_odown_master_without_candidate_backs_off_and_a_later_candidate_is_promoted() {
    let _g = serial().await;
    let mut m = RedisProcess::start(&[]);
    // Its only replica may not be promoted, until the operator says otherwise.
    let r = RedisProcess::start_replica(&m, &["--replica-priority", "0"]);
    wait_synced(&m, &[&r]).await;
    // failover_timeout 1 s: without backoff, one abort a second.
    let toml = format!(
        "[[masters]]\nname = \"lone\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = {DOWN_AFTER}\nfailover_timeout_ms = 1000\nparallel_syncs = 1\n",
        m.addr()
    );
    let c = cluster(toml);
    c.wait_leader(Duration::from_secs(20)).await;
    wait_monitored(&c, "lone", 1).await;
    m.kill9();
    support::wait_for(
        "the first no-candidate abort",
        Duration::from_secs(15),
        || (committed_aborts(&c.nodes[0], "lone") > 0).then_some(()),
    )
    .await;
    // Aborts 1 s, 2 s, 4 s apart: at 0, 1, 3 and 7 s. At a fixed 1 s, nine.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let aborts = committed_aborts(&c.nodes[0], "lone");
    eprintln!("no-candidate aborts committed in 8 s: {aborts}");
    assert!(aborts >= 2, "the abort was not repeated ({aborts})");
    assert!(
        aborts <= 5,
        "no-candidate aborts did not back off: {aborts} in 8 s"
    );
    // A candidate appears: it is promoted without waiting out the backoff (next abort due
    // 8 s after the last one).
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-priority")
        .arg("100")
        .query(&mut r.client())
        .expect("CONFIG SET replica-priority");
    let t0 = Instant::now();
    let epoch = wait_all_agree(&c, "lone", &r.addr(), Duration::from_secs(10)).await;
    eprintln!(
        "candidate appeared to promoted everywhere: {:?}",
        t0.elapsed()
    );
    assert_eq!(epoch, 1, "one failover");
    assert_eq!(r.role().as_deref(), Some("master"));
    let settled = committed_aborts(&c.nodes[0], "lone");
    // A negative window: no abort may be committed after the failover.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        committed_aborts(&c.nodes[0], "lone"),
        settled,
        "aborts committed after the failover"
    );
    m.restart();
}
