//! Failover tests that need a node's insides: three nodes started in this process (the same
//! `Node::start` the binary runs) with real `redis-server` processes. Covers operator
//! requests (`failover::request`: forced failover, zero-loss switchover under writes,
//! Sentinel's INPROG/NOGOODSLAVE answers) and bad input seen through the monitor view.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use raft_sentinel::app::Node;
use raft_sentinel::config::{Config, Overrides};
use raft_sentinel::failover::{self, FailoverError};
use raft_sentinel::fsm::{Command, FailoverReason};
use raft_sentinel::model::Addr;
use raft_sentinel::view::{InstanceInfo, ReportedRole};
use support::{eventually, follows, free_port, wait_synced, NodeToml, RedisProcess};
use tempfile::TempDir;
use tokio::time::Instant;

const DOWN_AFTER: u64 = 500;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct InProc {
    nodes: Vec<Node>,
    _dir: TempDir,
}

impl InProc {
    async fn start(n: u64, masters_toml: &str) -> InProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let peers: Vec<(u64, u16)> = (1..=n).map(|id| (id, free_port())).collect();
        let mut nodes = Vec::new();
        for &(id, peer_port) in &peers {
            let data = dir.path().join(format!("node{id}"));
            let ports = [free_port(), free_port(), peer_port, free_port()];
            let mut t = NodeToml::new(id, data.display())
                .listen("127.0.0.1", ports)
                .new_cluster()
                .raft("tick_ms", 20)
                .raft("election_ticks", 10)
                .raft("heartbeat_ticks", 2);
            for (pid, pport) in &peers {
                t = t.peer(*pid, format!("127.0.0.1:{pport}"));
            }
            let s = t.extra(masters_toml).render();
            let cfg = Config::resolve("test", &s, &Overrides::default()).expect("config");
            nodes.push(Node::start(cfg).await.expect("node start"));
        }
        let c = InProc { nodes, _dir: dir };
        eventually(Duration::from_secs(20), "a leader", || async {
            let l = c.nodes[0].raft.status().leader_id;
            (l != 0 && c.nodes.iter().all(|n| n.raft.status().leader_id == l)).then_some(())
        })
        .await;
        c
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }

    fn master_addr(&self, i: usize, name: &str) -> Option<Addr> {
        self.nodes[i]
            .raft
            .state()
            .masters
            .get(name)
            .map(|m| m.addr.clone())
    }

    /// Every node has `n` replicas of `name` committed, and its probes have a PING reply and
    /// an `INFO` from the master and from each replica, which reports its link up: a failover
    /// could pick any of them.
    async fn wait_monitored(&self, name: &str, n: usize) {
        let answers = |i: &InstanceInfo| {
            i.connected
                && i.sdown_since.is_none()
                && i.info_refresh.is_some()
                && i.last_ok_ping_reply.is_some()
        };
        eventually(
            Duration::from_secs(20),
            "replicas known and probed",
            || async {
                self.nodes
                    .iter()
                    .all(|node| {
                        let st = node.raft.state();
                        let Some(m) = st.masters.get(name) else {
                            return false;
                        };
                        let view = node.monitor_view.borrow().clone();
                        m.replicas.len() == n
                            && view.get(&m.addr).is_some_and(answers)
                            && m.replicas.iter().all(|r| {
                                view.get(r).is_some_and(|i| {
                                    answers(i)
                                        && i.role == Some(ReportedRole::Replica)
                                        && i.master_link_up
                                })
                            })
                    })
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits until every node answers `addr` and no failover or reconfiguration runs.
    async fn wait_settled(&self, name: &str, addr: &str) -> u64 {
        eventually(
            Duration::from_secs(15),
            &format!("every node settled on {addr}"),
            || async {
                let mut epoch = None;
                for n in &self.nodes {
                    let st = n.raft.state();
                    let m = st.masters.get(name)?;
                    if m.addr.to_string() != addr || m.failover.is_some() || m.reconf.is_some() {
                        return None;
                    }
                    if epoch.is_some_and(|e| e != m.config_epoch) {
                        return None;
                    }
                    epoch = Some(m.config_epoch);
                }
                epoch
            },
        )
        .await
    }
}

fn master_toml(name: &str, addr: &str, extra: &str) -> String {
    format!(
        "[[masters]]\nname = \"{name}\"\naddr = \"{addr}\"\nquorum = 2\ndown_after_ms = {DOWN_AFTER}\nfailover_timeout_ms = 5000\nparallel_syncs = 1\n{extra}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_under_writes_loses_no_acknowledged_write() {
    let _g = SERIAL.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter("raft_sentinel=info,raft=warn")
        .with_test_writer()
        .try_init();
    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    let r2 = RedisProcess::start_replica(&m, &[]);
    wait_synced(&m, &[&r1, &r2]).await;
    let c = InProc::start(3, &master_toml("mymaster", &m.addr(), "")).await;
    c.wait_monitored("mymaster", 2).await;

    // A writer that always writes to the master the coordinators name, and counts the
    // writes Redis acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicU64::new(0));
    let raft = c.nodes[0].raft.clone();
    let writer = {
        let stop = stop.clone();
        let acked_count = acked_count.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut max_gap = Duration::ZERO;
            let mut last_ack = Instant::now();
            let mut conn: Option<(Addr, redis::Connection)> = None;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let target = raft.state().masters["mymaster"].addr.clone();
                if conn.as_ref().is_none_or(|(a, _)| *a != target) {
                    conn = redis::Client::open(format!("redis://{target}/"))
                        .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(1)))
                        .ok()
                        .map(|c| (target.clone(), c));
                    if let Some((_, c)) = &conn {
                        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                    }
                }
                let Some((_, c)) = conn.as_mut() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let r: redis::RedisResult<()> =
                    redis::cmd("SET").arg(format!("w:{i}")).arg(i).query(c);
                match r {
                    Ok(()) => {
                        acked.push(i);
                        acked_count.fetch_add(1, Ordering::Relaxed);
                        let now = Instant::now();
                        max_gap = max_gap.max(now - last_ack);
                        last_ack = now;
                        i += 1;
                    }
                    Err(_) => {
                        // READONLY from the demoted master, or a killed connection: the same
                        // key is retried on whatever the coordinators name next.
                        conn = None;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            (acked, max_gap)
        })
    };
    // The switch starts while writes flow, and the writes go on after it.
    let writes_past = |n: u64| {
        let acked_count = acked_count.clone();
        eventually(Duration::from_secs(10), "writes acknowledged", move || {
            let acked_count = acked_count.clone();
            async move { (acked_count.load(Ordering::Relaxed) >= n).then_some(()) }
        })
    };
    writes_past(50).await;
    let t0 = Instant::now();
    let epoch = failover::request(
        &c.nodes[1].raft,
        "mymaster",
        FailoverReason::Switchover,
        None,
        Duration::from_secs(10),
    )
    .await
    .expect("switchover accepted");
    assert_eq!(epoch, 1);
    let new = eventually(
        Duration::from_secs(10),
        "the switch is committed",
        || async {
            c.master_addr(2, "mymaster")
                .filter(|a| a.to_string() != m.addr())
        },
    )
    .await;
    eprintln!("switchover committed after {:?}", t0.elapsed());
    c.wait_settled("mymaster", &new.to_string()).await;
    writes_past(acked_count.load(Ordering::Relaxed) + 60).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, max_gap) = writer.join().expect("writer");
    eprintln!(
        "{} writes acknowledged, longest write pause {max_gap:?}",
        acked.len()
    );
    assert!(acked.len() > 100, "the writer made progress");

    let promoted = [&r1, &r2]
        .into_iter()
        .find(|r| r.addr() == new.to_string())
        .expect("a replica");
    assert_eq!(promoted.role().as_deref(), Some("master"));
    let mut pc = promoted.client();
    let mut lost = Vec::new();
    for i in &acked {
        let v: Option<u64> = redis::cmd("GET")
            .arg(format!("w:{i}"))
            .query(&mut pc)
            .expect("GET");
        if v != Some(*i) {
            lost.push(*i);
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert!(
        max_gap < Duration::from_millis(500),
        "writes paused for {max_gap:?}"
    );
    eventually(
        Duration::from_secs(10),
        "old master and other replica follow the new master",
        || async {
            let other = if std::ptr::eq(promoted, &r1) {
                &r2
            } else {
                &r1
            };
            (follows(&m, promoted) && follows(other, promoted)).then_some(())
        },
    )
    .await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_failover_request_and_sentinel_errors() {
    let _g = SERIAL.lock().await;
    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &["--replica-priority", "50"]);
    let r2 = RedisProcess::start_replica(&m, &["--replica-priority", "100"]);
    let lonely = RedisProcess::start(&[]);
    let zero = RedisProcess::start_replica(&lonely, &["--replica-priority", "0"]);
    wait_synced(&m, &[&r1, &r2]).await;
    wait_synced(&lonely, &[&zero]).await;
    let toml = master_toml("mymaster", &m.addr(), "") + &master_toml("lonely", &lonely.addr(), "");
    let c = InProc::start(3, &toml).await;
    c.wait_monitored("mymaster", 2).await;
    c.wait_monitored("lonely", 1).await;
    let raft = &c.nodes[2].raft;

    let e = failover::request(
        raft,
        "nope",
        FailoverReason::Forced,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(e, FailoverError::NoSuchMaster);
    assert_eq!(e.resp_error(), "ERR No such master with that name");

    // Only a priority-0 replica: NOGOODSLAVE, with the reason, and nothing changes.
    let e = failover::request(
        raft,
        "lonely",
        FailoverReason::Forced,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(e.to_string(), "NOGOODSLAVE No suitable replica to promote");
    match &e {
        FailoverError::NoGoodSlave { reason } => {
            assert!(reason.contains("replica-priority 0"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(zero.role().as_deref(), Some("slave"));
    assert_eq!(
        c.master_addr(0, "lonely").unwrap().to_string(),
        lonely.addr()
    );

    // The target must be a known replica.
    let bogus: Addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let e = failover::request(
        raft,
        "mymaster",
        FailoverReason::Forced,
        Some(bogus),
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, FailoverError::NoGoodSlave { ref reason } if reason.contains("not a known replica")),
        "{e:?}"
    );

    // Forced failover of a healthy master: the best replica (priority 50) is promoted.
    // Writes acknowledged just before are not lost: the old master is paused and the
    // candidate catches up before its promotion.
    {
        let mut mc = m.client();
        let mut p = redis::pipe();
        for i in 0..5000 {
            p.cmd("SET").arg(format!("f:{i}")).arg(i).ignore();
        }
        let _: () = p.query(&mut mc).expect("writes");
    }
    let epoch = failover::request(
        raft,
        "mymaster",
        FailoverReason::Forced,
        None,
        Duration::from_secs(5),
    )
    .await
    .expect("forced failover");
    assert_eq!(epoch, 1);
    c.wait_settled("mymaster", &r1.addr()).await;
    assert_eq!(r1.role().as_deref(), Some("master"));
    let keys: i64 = redis::cmd("DBSIZE")
        .query(&mut r1.client())
        .expect("DBSIZE");
    assert_eq!(keys, 5000, "acknowledged writes lost in a forced failover");
    eventually(
        Duration::from_secs(10),
        "the old master and r2 follow r1",
        || async { (follows(&m, &r1) && follows(&r2, &r1)).then_some(()) },
    )
    .await;

    // A second request right after the first is either answered or refused with INPROG,
    // never run twice at once.
    let (a, b) = tokio::join!(
        failover::request(
            &c.nodes[0].raft,
            "mymaster",
            FailoverReason::Forced,
            Some(m.addr().parse().unwrap()),
            Duration::from_secs(5)
        ),
        failover::request(
            &c.nodes[1].raft,
            "mymaster",
            FailoverReason::Forced,
            Some(r2.addr().parse().unwrap()),
            Duration::from_secs(5)
        ),
    );
    let results = [a, b];
    let ok: Vec<u64> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let inprog = results
        .iter()
        .filter(|r| matches!(r, Err(FailoverError::InProgress)))
        .count();
    assert!(!ok.is_empty(), "{results:?}");
    assert_eq!(ok.len() + inprog, 2, "{results:?}");
    let epochs: BTreeSet<u64> = ok.iter().copied().collect();
    assert_eq!(
        epochs.len(),
        ok.len(),
        "two requests got the same epoch: {results:?}"
    );
    c.stop().await;
}

/// A port that does not speak Redis: it answers each command it receives (each RESP array
/// header) with `reply`.
fn fake_server(reply: &'static [u8]) -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut sock, _)) => {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 4096];
                        while !s.load(Ordering::Relaxed) {
                            match sock.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    let commands = count_commands(&buf[..n]).max(1);
                                    for _ in 0..commands {
                                        if sock.write_all(reply).is_err() {
                                            return;
                                        }
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (port, stop)
}

/// RESP array headers (`*<digit>` at the start of a line) in a chunk of requests.
fn count_commands(data: &[u8]) -> usize {
    (0..data.len())
        .filter(|&i| {
            data[i] == b'*'
                && (i == 0 || data[i - 1] == b'\n')
                && data.get(i + 1).is_some_and(|c| c.is_ascii_digit())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_instances_give_clear_errors_and_no_panic() {
    let _g = SERIAL.lock().await;
    let locked = RedisProcess::start(&["--requirepass", "right"]);
    // Port 1 (tcpmux): nobody listens there, and unlike a port from free_port() it cannot
    // be handed to one of the nodes' own listeners a moment later.
    let unreachable = 1;
    let (http, stop_http) = fake_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    // Valid RESP, but every reply is the same junk string: PING is not PONG, INFO is junk.
    let (junk, stop_junk) = fake_server(b"$8\r\nrole:wiz\r\n");
    let toml = master_toml("locked", &locked.addr(), "auth_pass = \"wrong\"\n")
        + &master_toml("gone", &format!("127.0.0.1:{unreachable}"), "")
        + &master_toml("http", &format!("127.0.0.1:{http}"), "")
        + &master_toml("junk", &format!("127.0.0.1:{junk}"), "");
    let c = InProc::start(3, &toml).await;

    let expect = [
        ("locked", locked.addr(), "authentication failed"),
        ("gone", format!("127.0.0.1:{unreachable}"), "cannot connect"),
        ("http", format!("127.0.0.1:{http}"), "parse error"),
        ("junk", format!("127.0.0.1:{junk}"), "wiz"),
    ];
    for (name, addr, needle) in &expect {
        let addr: Addr = addr.parse().unwrap();
        // The last error may also be a timeout between two clearer ones: wait for the
        // telling one, while the instance is down.
        let err = eventually(
            Duration::from_secs(10),
            &format!("{name}: down, with an error naming '{needle}'"),
            || async {
                let v = c.nodes[0].monitor_view.borrow().clone();
                let i = v.get(&addr)?;
                let e = i.last_error.clone()?;
                (i.sdown_since.is_some()
                    && e.to_lowercase().contains(&needle.to_lowercase())
                    && e.contains(&addr.to_string()))
                .then_some(e)
            },
        )
        .await;
        eprintln!("{name}: {err}");
    }
    // Each node proposed its observation: two of three make the cluster agree (ODOWN).
    eventually(
        Duration::from_secs(10),
        "every bad master is objectively down",
        || async {
            let st = c.nodes[0].raft.state();
            ["locked", "gone", "http", "junk"]
                .iter()
                .all(|n| st.masters[*n].is_odown())
                .then_some(())
        },
    )
    .await;
    // Still alive: the Raft nodes agree on a leader. Polled, not read once: an election may
    // be under way at that instant (leader id 0), which is no failure.
    eventually(Duration::from_secs(5), "a leader everywhere", || async {
        let l = c.nodes[0].raft.status().leader_id;
        (l != 0 && c.nodes.iter().all(|n| n.raft.status().leader_id == l)).then_some(())
    })
    .await;
    stop_http.store(true, Ordering::Relaxed);
    stop_junk.store(true, Ordering::Relaxed);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_master_is_not_failed_over_until_resumed() {
    let _g = SERIAL.lock().await;
    let mut m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    wait_synced(&m, &[&r1]).await;
    let c = InProc::start(3, &master_toml("mymaster", &m.addr(), "")).await;
    c.wait_monitored("mymaster", 1).await;
    let raft = &c.nodes[1].raft;
    raft.propose(Command::Pause {
        master: "mymaster".into(),
    })
    .await
    .expect("pause");

    m.kill9();
    eventually(Duration::from_secs(10), "objectively down", || async {
        c.nodes[0].raft.state().masters["mymaster"]
            .is_odown()
            .then_some(())
    })
    .await;
    // A negative window: a failover would start right after odown; none may while paused.
    tokio::time::sleep(Duration::from_millis(DOWN_AFTER * 3)).await;
    let st = c.nodes[0].raft.state();
    let ms = &st.masters["mymaster"];
    assert_eq!(ms.addr.to_string(), m.addr(), "failed over while paused");
    assert!(ms.failover.is_none() && st.current_epoch == 0);
    assert_eq!(r1.role().as_deref(), Some("slave"));

    raft.propose(Command::Resume {
        master: "mymaster".into(),
    })
    .await
    .expect("resume");
    let epoch = c.wait_settled("mymaster", &r1.addr()).await;
    assert_eq!(epoch, 1);
    assert_eq!(r1.role().as_deref(), Some("master"));
    m.restart();
    c.stop().await;
}
