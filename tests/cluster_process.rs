//! Three real `raft-sentinel run` processes on loopback: leader election, kill -9 of the
//! leader, restart from the data dir, membership changes through `ctl`, full restart.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::{eventually, voter_ids, Cluster, ClusterOpts, NodeProcess};
use tokio::time::Instant;

async fn monitor(node: &NodeProcess, name: &str) -> Result<(), tonic::Status> {
    let mut c = node
        .client()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    c.monitor(pb::MonitorRequest {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: 6379,
        quorum: 2,
        ..Default::default()
    })
    .await
    .map(|_| ())
}

async fn masters(node: &NodeProcess) -> Option<BTreeSet<String>> {
    let mut c = node.client().await.ok()?;
    let r = c.list_masters(pb::ListMastersRequest {}).await.ok()?;
    Some(r.into_inner().masters.into_iter().map(|m| m.name).collect())
}

async fn wait_has(node: &NodeProcess, names: &BTreeSet<String>) {
    eventually(
        Duration::from_secs(15),
        &format!("node {} has every acknowledged master", node.id),
        || async {
            let have = masters(node).await?;
            names.is_subset(&have).then_some(())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_restart_and_full_restart() {
    let mut c = Cluster::start(ClusterOpts::default());
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let mut acked = BTreeSet::new();
    for i in 0..10 {
        let name = format!("pre{i}");
        let via = &c.nodes[i % 3];
        monitor(via, &name)
            .await
            .unwrap_or_else(|e| panic!("monitor via node {}: {e}", via.id));
        acked.insert(name);
    }

    // kill -9 the leader: a new one must be elected within two election timeouts.
    let et = c.election_timeout();
    c.node_mut(leader).kill9();
    let t0 = Instant::now();
    let survivors: Vec<u64> = c
        .nodes
        .iter()
        .filter(|n| n.is_running())
        .map(|n| n.id)
        .collect();
    let new_leader = eventually(
        Duration::from_secs(10),
        "a new leader among the survivors",
        || async {
            let mut seen = None;
            for id in &survivors {
                let st = c.node(*id).status().await?;
                if st.leader_id == 0
                    || st.leader_id == leader
                    || seen.is_some_and(|l| l != st.leader_id)
                {
                    return None;
                }
                seen = Some(st.leader_id);
            }
            seen
        },
    )
    .await;
    let took = t0.elapsed();
    eprintln!("new leader {new_leader} after {took:?} (election timeout {et:?})");
    // Followers time out at a random point in [ET, 2ET) after the last heartbeat. When both
    // time out within a message's flight of each other, both pass pre-vote and split the
    // vote: Raft then waits one more randomized timeout, so the bound is two rounds (4 ET).
    // The extra 400 ms covers the status polling and scheduling on a loaded 2-core machine.
    // Measured here: 530-950 ms in 27 runs (ET 500 ms); once 1.47 s, which a 2 ET bound
    // called a failure although Raft worked as designed.
    assert!(
        took <= et * 4 + Duration::from_millis(400),
        "new leader took {took:?}, more than two election rounds ({et:?} election timeout)"
    );
    for id in &survivors {
        wait_has(c.node(*id), &acked).await;
    }
    for i in 0..5 {
        let name = format!("post{i}");
        monitor(c.node(survivors[i % 2]), &name).await.unwrap();
        acked.insert(name);
    }

    // The killed node restarts from its data dir and rejoins.
    c.node_mut(leader).spawn();
    wait_has(c.node(leader), &acked).await;
    eventually(
        Duration::from_secs(10),
        "restarted node follows the new leader",
        || async {
            let st = c.node(leader).status().await?;
            (st.leader_id == new_leader && st.leader_contact).then_some(())
        },
    )
    .await;

    // All nodes killed at once come back with the same state.
    let before = masters(c.node(new_leader)).await.unwrap();
    let applied_before = c.node(new_leader).status().await.unwrap().applied_index;
    for n in &mut c.nodes {
        n.kill9();
    }
    for n in &mut c.nodes {
        n.spawn();
    }
    c.wait_leader(Duration::from_secs(20)).await;
    for n in &c.nodes {
        let have = eventually(
            Duration::from_secs(15),
            "masters after full restart",
            || async {
                let m = masters(n).await?;
                (m == before).then_some(m)
            },
        )
        .await;
        assert!(acked.is_subset(&have));
        let st = n.status().await.unwrap();
        assert!(
            st.applied_index >= applied_before,
            "node {} went back in the log",
            n.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fourth_node_added_and_removed_through_ctl() {
    let mut c = Cluster::start(ClusterOpts::default());
    c.wait_leader(Duration::from_secs(20)).await;
    monitor(&c.nodes[0], "before-add").await.unwrap();

    let idx = c.spawn_joiner(4);
    let peer4 = c.nodes[idx].peer_addr();
    let (code, out, err) = c.ctl(&["add-node", "--id", "4", "--addr", &peer4]);
    assert_eq!(code, 0, "add-node failed: {out}{err}");
    for n in &c.nodes {
        eventually(
            Duration::from_secs(15),
            &format!("node {} sees 4 voters", n.id),
            || async {
                let st = n.status().await?;
                let voters = voter_ids(&st);
                (voters == [1, 2, 3, 4]).then_some(())
            },
        )
        .await;
    }
    wait_has(c.node(4), &["before-add".to_string()].into()).await;

    // The new node can lead: hand leadership to it, then remove it. ctl follows the leader
    // hint after the node transfers leadership away from itself.
    let (code, out, err) = c.ctl(&["transfer-leader", "--to", "4", "--json"]);
    assert_eq!(code, 0, "transfer-leader failed: {out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("ctl --json output");
    assert_eq!(v["leader_id"], 4);
    let (code, out, err) = c.ctl(&["remove-node", "--id", "4"]);
    assert_eq!(code, 0, "remove-node failed: {out}{err}");
    for id in 1..=3 {
        eventually(
            Duration::from_secs(15),
            &format!("node {id} sees 3 voters"),
            || async {
                let st = c.node(id).status().await?;
                let voters = voter_ids(&st);
                (voters == [1, 2, 3] && st.leader_id != 0 && st.leader_id != 4).then_some(())
            },
        )
        .await;
    }
    c.node_mut(4).kill9();
    // The three remaining nodes still commit.
    monitor(&c.nodes[1], "after-remove").await.unwrap();

    // ctl status --json is machine readable and reports the membership.
    let (code, out, _) = c.ctl(&["status", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["members"].as_array().unwrap().len(), 3);
    assert!(v["leader_id"].as_u64().unwrap() > 0);

    // Refusals are clear and change nothing.
    let (code, _, err) = c.ctl(&["remove-node", "--id", "9"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("not a member"), "{err}");
    let (code, _, err) = c.ctl(&["add-node", "--id", "5", "--addr", "nohost"]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("host:port"), "{err}");
}
