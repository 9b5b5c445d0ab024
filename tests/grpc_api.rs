//! gRPC API tests over the real binary. The partition test runs each node in its own network
//! namespace (root needed) and cuts one off the network.

mod support;

use std::time::Duration;

use support::netns::NetLab;
use support::wait_for;
use support::BIN;

/// Runs `ctl` inside host `host` against `endpoints`; returns (exit code, stdout, stderr).
fn ctl(lab: &NetLab, host: usize, endpoints: &str, args: &[&str]) -> (i32, String, String) {
    lab.ctl(
        host,
        &[&["--endpoint", endpoints, "--timeout-ms", "5000"][..], args].concat(),
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad ctl json {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_node_refuses_linearizable_reads_but_answers_local_ones() {
    assert!(
        NetLab::available(),
        "this test needs network namespaces (run the test suite as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lab = NetLab::new(4); // hosts 0-2 run nodes, host 3 is the client and Redis host
    let redis = format!("{}:6379", lab.hosts[3].ip);
    lab.spawn(
        3,
        "redis-server",
        &[
            "--bind".into(),
            lab.hosts[3].ip.clone(),
            "--port".into(),
            "6379".into(),
            "--save".into(),
            "".into(),
            "--protected-mode".into(),
            "no".into(),
        ],
        &dir.path().join("redis.log"),
    );
    for i in 0..3 {
        let cfg = lab.node_config(i, dir.path(), &redis, "", "");
        lab.spawn(
            i,
            BIN,
            &["run".into(), "--config".into(), cfg.display().to_string()],
            &dir.path().join(format!("node{}.log", i + 1)),
        );
    }
    let all = (0..3)
        .map(|i| format!("{}:7700", lab.hosts[i].ip))
        .collect::<Vec<_>>()
        .join(",");
    let leader = wait_for(
        "a leader known to every node",
        Duration::from_secs(20),
        || {
            let ids: Vec<u64> = (0..3)
                .filter_map(|i| {
                    let (code, out, _) = ctl(
                        &lab,
                        3,
                        &format!("{}:7700", lab.hosts[i].ip),
                        &["status", "--json"],
                    );
                    (code == 0).then(|| json(&out)["leader_id"].as_u64().unwrap_or(0))
                })
                .collect();
            (ids.len() == 3 && ids[0] != 0 && ids.iter().all(|l| *l == ids[0])).then(|| ids[0])
        },
    )
    .await;
    // The configured master is proposed once the cluster has formed: it may trail the election.
    let before = wait_for(
        "the configured master, read linearizably",
        Duration::from_secs(10),
        || {
            let (code, out, _) = ctl(
                &lab,
                3,
                &all,
                &["get-master", "mymaster", "--linearizable", "--json"],
            );
            (code == 0).then(|| json(&out))
        },
    )
    .await;

    // Cut the leader off: the others elect a new one, it stays up but alone.
    let x = (leader - 1) as usize;
    lab.isolate(x);
    let others: Vec<usize> = (0..3).filter(|i| *i != x).collect();
    let others_ep = others
        .iter()
        .map(|i| format!("{}:7700", lab.hosts[*i].ip))
        .collect::<Vec<_>>()
        .join(",");
    wait_for(
        "a new leader among the connected nodes",
        Duration::from_secs(20),
        || {
            let (code, out, _) = ctl(&lab, 3, &others_ep, &["status", "--json"]);
            (code == 0
                && json(&out)["leader_id"]
                    .as_u64()
                    .is_some_and(|l| l != 0 && l != leader))
            .then_some(())
        },
    )
    .await;
    // Its lease past, the isolated node knows it has no leader contact.
    wait_for(
        "the isolated node without leader contact",
        Duration::from_secs(5),
        || {
            let (code, out, _) = ctl(&lab, x, "127.0.0.1:7700", &["status", "--json"]);
            (code == 0 && json(&out)["leader_contact"] == false).then_some(())
        },
    )
    .await;
    let (code, _, err) = ctl(
        &lab,
        x,
        "127.0.0.1:7700",
        &["get-master", "mymaster", "--linearizable"],
    );
    assert_eq!(
        code, 3,
        "isolated node must answer UNAVAILABLE to a linearizable read: {err}"
    );
    assert!(
        err.contains("Unavailable") || err.contains("unavailable") || err.contains("no leader"),
        "{err}"
    );
    let (code, out, err) = ctl(
        &lab,
        x,
        "127.0.0.1:7700",
        &["get-master", "mymaster", "--json"],
    );
    assert_eq!(code, 0, "LOCAL read on the isolated node: {err}");
    let local = json(&out);
    assert_eq!(
        local["master"], before["master"],
        "LOCAL returns the last value"
    );
    assert_eq!(
        local["master"]["config_epoch"],
        before["master"]["config_epoch"]
    );
    assert!(local["applied_index"].as_u64().unwrap() > 0);
    for i in &others {
        let ep = format!("{}:7700", lab.hosts[*i].ip);
        for extra in [&["--linearizable"][..], &[][..]] {
            let mut args = vec!["get-master", "mymaster", "--json"];
            args.extend_from_slice(extra);
            let (code, out, err) = ctl(&lab, 3, &ep, &args);
            assert_eq!(code, 0, "node {} {args:?}: {err}", i + 1);
            assert_eq!(json(&out)["master"], before["master"]);
        }
    }
    // Healed, it vouches for its state again.
    lab.heal(x);
    wait_for(
        "the healed node serves linearizable reads",
        Duration::from_secs(20),
        || {
            let (code, _, _) = ctl(
                &lab,
                x,
                "127.0.0.1:7700",
                &["get-master", "mymaster", "--linearizable"],
            );
            (code == 0).then_some(())
        },
    )
    .await;
}

// === Tests on loopback with a real Redis set ===

use raft_sentinel::pb::api as pb;
use support::{eventually, Cluster, ClusterOpts, NodeProcess, RedisProcess};

/// A master with two replicas, in sync.
fn redis_set() -> (RedisProcess, RedisProcess, RedisProcess) {
    let m = RedisProcess::start(&[]);
    let r1 = RedisProcess::start_replica(&m, &[]);
    let r2 = RedisProcess::start_replica(&m, &[]);
    (m, r1, r2)
}

fn loopback_cluster(master: &RedisProcess) -> Cluster {
    Cluster::start(ClusterOpts {
        tick_ms: 20,
        election_ticks: 10,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = 500\nfailover_timeout_ms = 5000\n",
            master.addr()
        ),
        ..ClusterOpts::default()
    })
}

async fn get_master(node: &NodeProcess) -> Option<pb::MasterAddr> {
    let mut c = node.client().await.ok()?;
    c.get_master(pb::GetMasterRequest {
        name: "mymaster".into(),
        consistency: pb::Consistency::Local.into(),
    })
    .await
    .ok()?
    .into_inner()
    .master
}

/// Waits until every running node has applied the configured master: it is proposed once the
/// cluster has formed, so it may trail the election that `wait_leader` waits for.
async fn wait_configured(c: &Cluster) {
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        eventually(
            Duration::from_secs(20),
            &format!("node {} has applied the configured master", n.id),
            || async { get_master(n).await.map(|_| ()) },
        )
        .await;
    }
}

/// Waits until every running node knows two replicas of mymaster and nothing is in flight,
/// so a forced failover has a candidate.
async fn wait_ready_for_failover(c: &Cluster) {
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        eventually(
            Duration::from_secs(30),
            &format!("node {} sees 2 replicas, no failover", n.id),
            || async {
                let m = get_master(n).await?;
                (m.num_replicas >= 2 && !m.failover_in_progress).then_some(())
            },
        )
        .await;
    }
    // The leader chooses from its own INFO of the replicas, which must show them following
    // the current master with the link up (a switchover refuses others as not in sync).
    // Each node reads INFO on its own schedule, and the leader may be any of them: every
    // node's view must show it, not only the first node's.
    for n in c.nodes.iter().filter(|n| n.is_running()) {
        eventually(
            Duration::from_secs(30),
            &format!("node {} sees the replicas follow the current master", n.id),
            || async {
                let d = n.master_detail("mymaster").await?;
                let master = d.master.as_ref()?;
                let at = format!("{}:{}", master.host, master.port);
                let ok = d
                    .replicas
                    .iter()
                    .filter(|r| r.following == at && r.master_link_up)
                    .count();
                (ok >= 2).then_some(())
            },
        )
        .await;
    }
}

/// Forces a failover through ctl and waits until every node answers the new address.
async fn force_failover(c: &Cluster) -> (u64, String) {
    wait_ready_for_failover(c).await;
    let before = get_master(&c.nodes[0]).await.unwrap();
    let (code, out, err) = c.ctl(&["failover", "mymaster", "--json"]);
    assert_eq!(code, 0, "ctl failover: {out}{err}");
    let epoch = json(&out)["epoch"].as_u64().unwrap();
    let addr = eventually(Duration::from_secs(20), "every node switched", || async {
        let mut addr = None;
        for n in c.nodes.iter().filter(|n| n.is_running()) {
            let m = get_master(n).await?;
            if m.config_epoch != epoch
                || (m.host.clone(), m.port) == (before.host.clone(), before.port)
            {
                return None;
            }
            let a = format!("{}:{}", m.host, m.port);
            if addr.as_ref().is_some_and(|x| *x != a) {
                return None;
            }
            addr = Some(a);
        }
        addr
    })
    .await;
    (epoch, addr)
}

/// Runs ctl expecting a failure with this exit code and text in stderr.
fn err_case(c: &Cluster, args: &[&str], want_code: i32, want: &str) {
    let (code, out, err) = c.ctl(args);
    assert_eq!(code, want_code, "ctl {args:?}: {out}{err}");
    assert!(
        err.contains(want),
        "ctl {args:?}: expected '{want}' in {err}"
    );
}

async fn next_change(s: &mut tonic::Streaming<pb::MasterChange>) -> pb::MasterChange {
    tokio::time::timeout(Duration::from_secs(20), s.message())
        .await
        .expect("watch stream stalled")
        .expect("watch stream failed")
        .expect("watch stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_three_failovers_in_order_and_resumes_exactly() {
    let (m, r1, r2) = redis_set();
    let c = loopback_cluster(&m);
    c.wait_leader(Duration::from_secs(20)).await;
    wait_configured(&c).await;
    let mut w = c.nodes[0]
        .client()
        .await
        .unwrap()
        .watch_masters(pb::WatchMastersRequest {
            names: vec!["mymaster".into()],
            from_epoch: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let cur = next_change(&mut w).await;
    assert_eq!(cur.kind(), pb::master_change::Kind::Current);
    assert_eq!(format!("{}:{}", cur.host, cur.port), m.addr());

    let mut switches = Vec::new();
    let (e1, a1) = force_failover(&c).await;
    switches.push((e1, a1.clone()));
    let s1 = next_change(&mut w).await;
    assert_eq!(s1.kind(), pb::master_change::Kind::Switch);
    assert_eq!(
        (s1.epoch, format!("{}:{}", s1.host, s1.port)),
        (e1, a1.clone())
    );
    assert_eq!(format!("{}:{}", s1.old_host, s1.old_port), m.addr());
    // The client disconnects after the first switch...
    drop(w);
    for _ in 0..2 {
        switches.push(force_failover(&c).await);
    }
    assert!(
        switches.windows(2).all(|p| p[0].0 < p[1].0),
        "epochs increase: {switches:?}"
    );
    // ...and resumes on another node from the epoch it saw: exactly the two it missed.
    let mut w2 = c.nodes[1]
        .client()
        .await
        .unwrap()
        .watch_masters(pb::WatchMastersRequest {
            names: vec![],
            from_epoch: e1,
        })
        .await
        .unwrap()
        .into_inner();
    for (epoch, addr) in &switches[1..] {
        let ch = next_change(&mut w2).await;
        assert_eq!(ch.kind(), pb::master_change::Kind::Switch);
        assert_eq!(
            (ch.epoch, format!("{}:{}", ch.host, ch.port)),
            (*epoch, addr.clone())
        );
    }
    let extra = tokio::time::timeout(Duration::from_millis(700), w2.message()).await;
    assert!(
        extra.is_err(),
        "nothing beyond the missed switches: {extra:?}"
    );
    // A fresh watch from epoch 0 through ctl sees the current address; --from-epoch replays.
    let (code, out, err) = c.ctl(&[
        "watch",
        "mymaster",
        "--from-epoch",
        &e1.to_string(),
        "--count",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let epochs: Vec<u64> = out
        .lines()
        .map(|l| json(l)["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, [switches[1].0, switches[2].0]);
    drop((r1, r2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_three_five_three_with_a_failover_in_between() {
    let (m, _r1, _r2) = redis_set();
    let mut c = loopback_cluster(&m);
    c.wait_leader(Duration::from_secs(20)).await;
    for id in [4u64, 5] {
        let i = c.spawn_joiner(id);
        let addr = c.nodes[i].peer_addr();
        let (code, out, err) = c.ctl(&["add-node", "--id", &id.to_string(), "--addr", &addr]);
        assert_eq!(code, 0, "add-node {id}: {out}{err}");
    }
    // add-node returns once the leader left the joint configuration; the node ctl asks
    // (the first endpoint) applies it a moment later.
    let voters = || {
        let (code, out, _) = c.ctl(&["status", "--json"]);
        assert_eq!(code, 0);
        json(&out)["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["voter"] == true)
            .count()
    };
    wait_for("five voters", Duration::from_secs(5), || {
        (voters() == 5).then_some(())
    })
    .await;
    // With five voters a failover still works, and all five agree.
    let (epoch, addr) = force_failover(&c).await;
    for n in &c.nodes {
        let mm = get_master(n).await.unwrap();
        assert_eq!(
            (mm.config_epoch, format!("{}:{}", mm.host, mm.port)),
            (epoch, addr.clone())
        );
    }
    for id in [5u64, 4] {
        let (code, out, err) = c.ctl(&["remove-node", "--id", &id.to_string()]);
        assert_eq!(code, 0, "remove-node {id}: {out}{err}");
    }
    c.node_mut(4).kill9();
    c.node_mut(5).kill9();
    // As for the additions: the node ctl asks applies the last removal a moment after the
    // leader answered it.
    let members = || {
        let (code, out, _) = c.ctl(&["status", "--json"]);
        assert_eq!(code, 0);
        json(&out)["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect::<Vec<u64>>()
    };
    wait_for("members 1, 2, 3", Duration::from_secs(5), || {
        (members() == [1, 2, 3]).then_some(())
    })
    .await;
    let (epoch2, _) = force_failover(&c).await;
    assert!(epoch2 > epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ctl_subcommand_and_clear_errors() {
    let (m, _r1, _r2) = redis_set();
    let mut c = loopback_cluster(&m);
    c.wait_leader(Duration::from_secs(20)).await;
    wait_configured(&c).await;
    let ok = |args: &[&str]| -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (code, out, err) = c.ctl(&a);
        assert_eq!(code, 0, "ctl {args:?}: {out}{err}");
        json(&out)
    };
    let st = ok(&["status"]);
    assert_eq!(st["members"].as_array().unwrap().len(), 3);
    assert!(st["leader_id"].as_u64().unwrap() > 0);
    let ms = ok(&["masters"]);
    assert_eq!(ms["masters"][0]["name"], "mymaster");
    let gm = ok(&["get-master", "mymaster", "--linearizable"]);
    assert_eq!(
        format!(
            "{}:{}",
            gm["master"]["host"].as_str().unwrap(),
            gm["master"]["port"]
        ),
        m.addr()
    );
    ok(&[
        "monitor",
        "second",
        "127.0.0.1",
        "6390",
        "2",
        "--down-after-ms",
        "3000",
    ]);
    ok(&[
        "set",
        "second",
        "quorum",
        "3",
        "down-after-milliseconds",
        "4000",
        "auth-pass",
        "s3cret",
    ]);
    let d = ok(&["master", "second"]);
    assert_eq!(d["master"]["quorum"], 3);
    assert_eq!(d["down_after_ms"], 4000);
    let (_, raw, _) = c.ctl(&["master", "second", "--json"]);
    assert!(!raw.contains("s3cret"), "a password must never be printed");
    ok(&["pause", "second"]);
    assert_eq!(ok(&["master", "second"])["master"]["paused"], true);
    ok(&["resume", "second"]);
    assert_eq!(ok(&["master", "second"])["master"]["paused"], false);
    assert_eq!(ok(&["reset", "sec*"])["count"], 1);
    ok(&["remove", "second"]);
    // The detail of a monitored master: replicas discovered, the master seen up.
    let d = eventually(
        Duration::from_secs(20),
        "replicas in master detail",
        || async {
            let (code, out, _) = c.ctl(&["master", "mymaster", "--json"]);
            let v = json(&out);
            (code == 0 && v["replicas"].as_array().is_some_and(|r| r.len() == 2)).then_some(v)
        },
    )
    .await;
    assert_eq!(d["master_instance"]["flags"][0], "master");
    // Switchover through ctl (zero-loss path), then a forced failover.
    wait_ready_for_failover(&c).await;
    let sw = ok(&["switchover", "mymaster"]);
    assert!(sw["epoch"].as_u64().unwrap() > 0);
    let (epoch, _) = force_failover(&c).await;
    assert!(epoch > sw["epoch"].as_u64().unwrap());
    let (code, out, _) = c.ctl(&[
        "watch",
        "--from-epoch",
        &sw["epoch"].to_string(),
        "--count",
        "1",
        "--json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(json(out.lines().next().unwrap())["epoch"], epoch);

    // Clear errors, nothing changed.
    for (args, code, want) in [
        (&["get-master", "nope"][..], 4, "no such master"),
        (&["master", "nope"][..], 4, "no such master"),
        (&["failover", "nope"][..], 4, "No such master"),
        (
            &["monitor", "q0", "127.0.0.1", "6391", "0"][..],
            5,
            "Quorum must be 1 or greater.",
        ),
        (
            &["monitor", "badport", "127.0.0.1", "0", "1"][..],
            5,
            "Invalid port number.",
        ),
        (
            &["monitor", "badhost", "no host", "6392", "1"][..],
            5,
            "invalid host",
        ),
        (
            &["monitor", "mymaster", "127.0.0.1", "1", "2"][..],
            5,
            "Duplicate master name.",
        ),
        (
            &["set", "mymaster", "quorum", "zero"][..],
            5,
            "Invalid argument 'zero'",
        ),
        (
            &["switchover", "mymaster", "--target", "nohost"][..],
            5,
            "target",
        ),
    ] {
        err_case(&c, args, code, want);
    }
    let (_, out, _) = c.ctl(&["masters", "--json"]);
    let names: Vec<String> = json(&out)["masters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["mymaster"], "failed commands changed nothing");
    // A removal that would leave the reachable voters without a majority is refused.
    let leader = c.wait_leader(Duration::from_secs(10)).await;
    let victim = (1..=3).find(|i| *i != leader).unwrap();
    let other = (1..=3).find(|i| *i != leader && *i != victim).unwrap();
    c.node_mut(victim).kill9();
    eventually(
        Duration::from_secs(5),
        "the leader sees the killed node inactive",
        || async {
            let st = c.node(leader).status().await?;
            let m = st.members.iter().find(|m| m.id == victim)?;
            (st.leader_id == leader && !m.recent_active).then_some(())
        },
    )
    .await;
    err_case(
        &c,
        &["remove-node", "--id", &other.to_string()],
        5,
        "no majority",
    );
    let (_, out, _) = c.ctl(&["status", "--json"]);
    assert_eq!(json(&out)["members"].as_array().unwrap().len(), 3);
}

/// `flags` of each instance map a Sentinel-port reply lists, by address (`ip:port`).
fn resp_flags(node: &NodeProcess, sub: &str) -> Vec<(String, String)> {
    let mut con = redis::Client::open(format!("redis://{}", node.sentinel_addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut cmd = redis::cmd("SENTINEL");
    cmd.arg(sub).arg("mymaster");
    let maps: Vec<Vec<String>> = if sub == "MASTER" {
        vec![cmd.query(&mut con).unwrap()]
    } else {
        cmd.query(&mut con).unwrap()
    };
    maps.iter()
        .map(|kv| {
            let field = |k: &str| {
                let i = kv.iter().position(|f| f == k).expect(k);
                kv[i + 1].clone()
            };
            (format!("{}:{}", field("ip"), field("port")), field("flags"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_the_sentinel_port_report_the_same_flags() {
    let (m, _r1, mut r2) = redis_set();
    let c = loopback_cluster(&m);
    c.wait_leader(Duration::from_secs(20)).await;
    wait_ready_for_failover(&c).await;
    let down = r2.addr();
    r2.kill9();
    let node = &c.nodes[0];
    let api = node.client().await.unwrap();
    // Both ports of one node read the same view; compared once the dead replica is s_down
    // there (the view is then stable: nothing else changes).
    let (grpc, resp) = eventually(
        Duration::from_secs(10),
        "the killed replica is s_down on both ports",
        || {
            let mut api = api.clone();
            let down = down.clone();
            async move {
                let d = api
                    .get_master_detail(pb::GetMasterDetailRequest {
                        name: "mymaster".into(),
                    })
                    .await
                    .ok()?
                    .into_inner();
                let mut grpc: Vec<(String, String)> = d
                    .replicas
                    .iter()
                    .map(|r| (r.addr.clone(), r.flags.join(",")))
                    .collect();
                let mi = d.master_instance.as_ref()?;
                grpc.push((mi.addr.clone(), mi.flags.join(",")));
                let mut resp = resp_flags(node, "REPLICAS");
                resp.extend(resp_flags(node, "MASTER"));
                grpc.sort();
                resp.sort();
                let seen = |v: &[(String, String)]| {
                    v.iter().any(|(a, f)| *a == down && f.contains("s_down"))
                };
                (seen(&grpc) && seen(&resp)).then_some((grpc, resp))
            }
        },
    )
    .await;
    assert_eq!(grpc, resp, "gRPC flags differ from the Sentinel port's");
    assert!(
        grpc.iter()
            .any(|(a, f)| *a == down && f == "s_down,slave,disconnected"),
        "{grpc:?}"
    );
}

#[test]
fn ctl_with_no_reachable_node_exits_3() {
    let dead = format!("127.0.0.1:{}", support::free_port());
    let out = std::process::Command::new(BIN)
        .args(["ctl", "--endpoint", &dead, "--timeout-ms", "500", "status"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("no node reachable that could answer"), "{err}");
    assert!(
        err.contains(&dead),
        "the last endpoint's error is shown: {err}"
    );
}
