//! A node whose data dir was lost must not come back as a fresh member under its old id.
//!
//! Three real nodes with the shipped style of configuration (every node says the cluster is
//! new). A failover is committed on {A, C} while B is down; C's disk is wiped and C restarts
//! with the same configuration; B returns and A dies. Every node that answers must still know
//! the committed switch, and no epoch may be handed out twice. C is then brought back with
//! `ctl replace-node` and the cluster survives A's death with C as a full voter.

mod support;

use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::{eventually, Cluster, ClusterOpts, MasterToml, NodeProcess, RedisProcess};
use tokio::time::Instant;

const A: u64 = 1;
const B: u64 = 2;
const C: u64 = 3;

/// `GetMaster` on one node: (address, config epoch), or None if it does not answer (down,
/// or no leader to confirm the read).
async fn get_master_at(
    node: &NodeProcess,
    name: &str,
    consistency: pb::Consistency,
) -> Option<(String, u64)> {
    let mut c = node.client().await.ok()?;
    let r = c
        .get_master(pb::GetMasterRequest {
            name: name.into(),
            consistency: consistency as i32,
        })
        .await
        .ok()?
        .into_inner();
    let m = r.master?;
    Some((format!("{}:{}", m.host, m.port), m.config_epoch))
}

async fn get_master(node: &NodeProcess, name: &str) -> Option<(String, u64)> {
    get_master_at(node, name, pb::Consistency::Local).await
}

async fn wait_addr(node: &NodeProcess, addr: &str, limit: Duration) -> u64 {
    eventually(
        limit,
        &format!("node {} answers {addr}", node.id),
        || async {
            let (a, e) = get_master(node, "mymaster").await?;
            (a == addr).then_some(e)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_node_does_not_rebootstrap_and_is_replaced() {
    let master = RedisProcess::start(&[]);
    let replica = RedisProcess::start_replica(&master, &[]);
    let mut c = Cluster::start(ClusterOpts {
        election_ticks: 10,
        ..ClusterOpts::watching(
            MasterToml::new("mymaster", master.addr(), 2)
                .set("down_after_ms", 500)
                .set("failover_timeout_ms", 5000)
                .set("parallel_syncs", 1),
        )
    });
    c.wait_leader(Duration::from_secs(20)).await;
    eventually(
        Duration::from_secs(20),
        "every node knows the replica",
        || async {
            for n in &c.nodes {
                let mut cl = n.client().await.ok()?;
                let r = cl
                    .get_master(pb::GetMasterRequest {
                        name: "mymaster".into(),
                        consistency: pb::Consistency::Local as i32,
                    })
                    .await
                    .ok()?
                    .into_inner();
                if r.master?.num_replicas != 1 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;

    // B must know that C has run (C's announcement applied there): that is what B tells
    // the wiped C later.
    eventually(
        Duration::from_secs(20),
        "B has applied every node's announcement",
        || async {
            let mut cl = c.node(B).client().await.ok()?;
            let st = cl
                .cluster_status(pb::ClusterStatusRequest {})
                .await
                .ok()?
                .into_inner();
            (st.members.len() == 3 && st.members.iter().all(|m| !m.run_id.is_empty())).then_some(())
        },
    )
    .await;

    // 1. B down; a failover is committed on {A, C}.
    c.node_mut(B).kill9();
    c.wait_leader(Duration::from_secs(20)).await;
    eventually(
        Duration::from_secs(20),
        "forced failover starts",
        || async {
            let (code, _, _) = c.ctl(&["failover", "mymaster"]);
            (code == 0).then_some(())
        },
    )
    .await;
    let e1 = wait_addr(c.node(A), &replica.addr(), Duration::from_secs(20)).await;
    wait_addr(c.node(C), &replica.addr(), Duration::from_secs(20)).await;
    assert!(e1 >= 1, "the switch has an epoch");

    // 2. C's disk is wiped. 3. A dies; C restarts with the same configuration and B
    // returns. (A dies before C could fetch the log from it.)
    c.node_mut(C).kill9();
    std::fs::remove_dir_all(&c.node(C).data_dir).expect("wipe C's data dir");
    c.node_mut(A).kill9();
    c.node_mut(C).spawn();
    c.node_mut(B).spawn();

    // For many election timeouts, whatever B and C answer with a leader's confirmation must
    // include the committed switch; C says it waits to be re-admitted.
    let check = || async {
        for id in [B, C] {
            let r = get_master_at(c.node(id), "mymaster", pb::Consistency::Linearizable).await;
            if let Some((addr, epoch)) = r {
                assert!(
                    addr == replica.addr() && epoch >= e1,
                    "node {id} answers {addr} at epoch {epoch}: the switch committed at \
                     epoch {e1} (to {}) was lost",
                    replica.addr()
                );
            }
        }
    };
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        check().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        Duration::from_secs(20),
        "C reports that it waits to be re-admitted",
        || async {
            check().await;
            c.node(C).status().await?.awaiting_replacement.then_some(())
        },
    )
    .await;

    // A returns: the cluster has its majority again and C catches up, but does not vote yet.
    c.node_mut(A).spawn();
    c.wait_leader(Duration::from_secs(20)).await;
    for id in [A, B, C] {
        wait_addr(c.node(id), &replica.addr(), Duration::from_secs(20)).await;
    }

    // Replace C: demoted to learner, promoted once caught up.
    let (code, out, err) = c.ctl(&["replace-node", "--id", "3"]);
    assert_eq!(code, 0, "replace-node failed: {out}{err}");
    for id in [A, B, C] {
        eventually(
            Duration::from_secs(15),
            &format!("node {id} sees 3 voters"),
            || async { (c.node(id).voter_ids().await? == [A, B, C]).then_some(()) },
        )
        .await;
    }
    eventually(
        Duration::from_secs(15),
        "C is no longer waiting",
        || async { (!c.node(C).status().await?.awaiting_replacement).then_some(()) },
    )
    .await;

    // Now C is a full voter with the log: A's death leaves a working majority {B, C}.
    c.node_mut(A).kill9();
    eventually(
        Duration::from_secs(20),
        "B and C elect a leader",
        || async {
            let b = c.node(B).status().await?;
            let cc = c.node(C).status().await?;
            (b.leader_id != 0 && b.leader_id == cc.leader_id && b.leader_id != A).then_some(())
        },
    )
    .await;
    for id in [B, C] {
        let e = wait_addr(c.node(id), &replica.addr(), Duration::from_secs(20)).await;
        assert_eq!(e, e1, "node {id} keeps the committed epoch");
    }
    // A new failover takes a new epoch, never e1 again.
    eventually(
        Duration::from_secs(20),
        "second failover starts",
        || async {
            let (code, _, _) = c.ctl(&["failover", "mymaster"]);
            (code == 0).then_some(())
        },
    )
    .await;
    let e2 = wait_addr(c.node(B), &master.addr(), Duration::from_secs(30)).await;
    assert!(e2 > e1, "epoch {e2} after {e1}");
}
