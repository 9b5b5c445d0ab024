//! What operators' automation does to a cluster of real `raft-sentinel run` processes: setup
//! commands sent to every node right after start, and writes while leadership moves.

mod support;

use std::time::Duration;

use support::resp::{RespClient, Value};
use support::{eventually, free_port, Cluster, ClusterOpts};
use tokio::net::TcpStream;

/// Connects as soon as the node's Sentinel port accepts connections.
async fn connect_when_up(addr: &str) -> RespClient {
    eventually(
        Duration::from_secs(10),
        "the Sentinel port accepts",
        || async { TcpStream::connect(addr).await.ok().map(|_| ()) },
    )
    .await;
    RespClient::connect(addr).await
}

fn ok(v: &Value) -> bool {
    v.text().as_deref() == Some("OK")
}

/// Production Raft timing (100 ms ticks, 10 election ticks): 2 × election timeout = 2 s.
fn opts() -> ClusterOpts {
    ClusterOpts {
        tick_ms: 100,
        election_ticks: 10,
        heartbeat_ticks: 2,
        ..ClusterOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_sent_to_every_node_right_after_start_succeeds_everywhere() {
    let cluster = Cluster::start(opts());
    let port = free_port().to_string();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.sentinel_addr()).collect();
    // What a configuration script does: the same setup on every sentinel, as soon as it is up.
    let tasks: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            let port = port.clone();
            tokio::spawn(async move {
                let mut c = connect_when_up(&addr).await;
                let mut replies = Vec::new();
                for cmd in [
                    vec!["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "2"],
                    vec![
                        "SENTINEL",
                        "SET",
                        "mymaster",
                        "down-after-milliseconds",
                        "5000",
                    ],
                    vec!["SENTINEL", "SET", "mymaster", "failover-timeout", "60000"],
                    vec!["SENTINEL", "SET", "mymaster", "auth-pass", "secret"],
                    vec!["SENTINEL", "SET", "mymaster", "parallel-syncs", "1"],
                ] {
                    let v = c.cmd(&cmd).await;
                    replies.push((cmd.join(" "), v));
                }
                (addr, replies)
            })
        })
        .collect();
    for t in tasks {
        let (addr, replies) = t.await.expect("task");
        for (cmd, v) in replies {
            assert!(ok(&v), "{addr}: `{cmd}` answered {v:?}");
        }
    }
    // A MONITOR that disagrees with the existing master still gets Sentinel's error.
    let mut c = RespClient::connect(&cluster.nodes[0].sentinel_addr()).await;
    let other = free_port().to_string();
    let raw = c
        .raw(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &other, "2"])
        .await;
    assert_eq!(raw, b"-ERR Duplicate master name.\r\n");
    let raw = c
        .raw(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "3"])
        .await;
    assert_eq!(raw, b"-ERR Duplicate master name.\r\n");
    // The identical one is still +OK after the fact.
    let raw = c
        .raw(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "2"])
        .await;
    assert_eq!(raw, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sets_keep_answering_ok_while_leadership_moves() {
    let cluster = Cluster::start(opts());
    let first = cluster.wait_leader(Duration::from_secs(10)).await;
    let port = free_port().to_string();
    let mut c = RespClient::connect(&cluster.node(first).sentinel_addr()).await;
    let v = c
        .cmd(&["SENTINEL", "MONITOR", "mymaster", "127.0.0.1", &port, "2"])
        .await;
    assert!(ok(&v), "MONITOR answered {v:?}");

    // One writer per node, each sending SETs in a loop until the transfers are done.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| {
            let addr = n.sentinel_addr();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = RespClient::connect(&addr).await;
                let mut sent = 0u32;
                let mut bad = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    let val = (5000 + i).to_string();
                    let v = c
                        .cmd(&[
                            "SENTINEL",
                            "SET",
                            "mymaster",
                            "down-after-milliseconds",
                            &val,
                        ])
                        .await;
                    sent += 1;
                    if !ok(&v) {
                        bad.push(format!("SET #{i} via {addr}: {v:?}"));
                    }
                }
                (sent, bad)
            })
        })
        .collect();

    let mut leader = first;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let to = cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .find(|&id| id != leader)
            .expect("another node");
        let (code, out, err) = cluster.ctl(&["transfer-leader", "--to", &to.to_string()]);
        assert_eq!(code, 0, "transfer {round} to {to}: {out} {err}");
        leader = eventually(
            Duration::from_secs(10),
            "the new leader is known",
            || async {
                let st = cluster.node(to).status().await?;
                (st.leader_id == to).then_some(to)
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for w in writers {
        let (sent, bad) = w.await.expect("writer");
        total += sent;
        assert!(bad.is_empty(), "SETs that did not answer OK: {bad:#?}");
    }
    assert!(
        total >= 30,
        "only {total} SETs were sent during the transfers"
    );
}
