//! A replica that stays unreachable, and that its master no longer lists, is forgotten after
//! the master's `replica-forget-after` through a committed entry with a `-slave` event.

mod support;

use std::time::Duration;

use support::{Cluster, ClusterOpts, MasterToml, RedisProcess};

fn detail(c: &Cluster) -> Option<serde_json::Value> {
    let (code, out, _) = c.ctl(&["--json", "master", "mymaster"]);
    if code != 0 {
        return None;
    }
    serde_json::from_str(out.trim()).ok()
}

fn replicas(d: &serde_json::Value) -> Vec<String> {
    d["replicas"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["addr"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_unlisted_replica_is_forgotten_with_a_minus_slave_event() {
    let master = RedisProcess::start(&[]);
    let keep = RedisProcess::start_replica(&master, &[]);
    let mut lost = RedisProcess::start_replica(&master, &[]);
    let c = Cluster::start(ClusterOpts::watching(
        MasterToml::new("mymaster", master.addr(), 2).set("down_after_ms", 500),
    ));
    c.wait_leader(Duration::from_secs(15)).await;
    support::eventually(Duration::from_secs(20), "both replicas known", || async {
        let d = detail(&c)?;
        (replicas(&d).len() == 2).then_some(())
    })
    .await;
    // The option is written in command format 2, which the cluster accepts once every node
    // announced that it reads it.
    support::eventually(Duration::from_secs(20), "cluster version 2", || async {
        let st = c.nodes[0].status().await?;
        (st.cluster_version >= 2).then_some(())
    })
    .await;
    let (code, _, err) = c.ctl(&["set", "mymaster", "replica-forget-after", "2000"]);
    assert_eq!(code, 0, "{err}");

    lost.kill9();
    let d = support::eventually(
        Duration::from_secs(20),
        "the dead replica forgotten",
        || async {
            let d = detail(&c)?;
            (replicas(&d).len() == 1).then_some(d)
        },
    )
    .await;
    assert_eq!(replicas(&d), [keep.addr()], "the live replica stays");
    let (host, port) = lost
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    let event = format!("-slave slave {} {host} {port} @ mymaster", lost.addr());
    support::eventually(
        Duration::from_secs(5),
        "the -slave event in every node's log",
        || async {
            c.nodes
                .iter()
                .all(|n| n.log_tail(400).contains(&event))
                .then_some(())
        },
    )
    .await;
}
