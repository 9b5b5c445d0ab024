//! Crash safety: kill -9 nodes in a loop while proposals run. Every proposal that was
//! reported applied must be present on every node afterwards.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use raft_sentinel::pb::api as pb;
use rand::{Rng, SeedableRng};
use support::{eventually, Cluster, ClusterOpts};

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_proposals_survive_kill9_loop() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash loop seed {seed} (set CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut c = Cluster::start(ClusterOpts {
        // Small compaction threshold so restarts also cross snapshots and compaction.
        compact_threshold: 20,
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;

    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let endpoints: Vec<String> = c.nodes.iter().map(|n| n.grpc_addr()).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let acked = acked.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seq += 1;
                let addr = &endpoints[seq as usize % endpoints.len()];
                let name = format!("c{seq}");
                let res = async {
                    let ep = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                        .ok()?
                        .connect_timeout(Duration::from_millis(200))
                        .timeout(Duration::from_secs(3));
                    let mut cl =
                        pb::coordinator_client::CoordinatorClient::new(ep.connect().await.ok()?);
                    cl.monitor(pb::MonitorRequest {
                        name: name.clone(),
                        host: "127.0.0.1".into(),
                        port: 6379,
                        quorum: 1,
                        ..Default::default()
                    })
                    .await
                    .ok()
                }
                .await;
                if res.is_some() {
                    acked.lock().insert(name);
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };

    for round in 0..ROUNDS {
        // Prefer the leader half of the time: that is where acknowledged writes are at risk.
        let leader = c.nodes[0]
            .status()
            .await
            .map(|s| s.leader_id)
            .filter(|l| *l != 0);
        let victim = match leader {
            Some(l) if rng.random_bool(0.5) => l,
            _ => rng.random_range(1..=3u64),
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..400))).await;
        c.node_mut(victim).kill9();
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
        c.node_mut(victim).spawn();
        eprintln!(
            "round {round}: killed and restarted node {victim}; {} acknowledged so far",
            acked.lock().len()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let acked = acked.lock().clone();
    assert!(
        acked.len() >= ROUNDS,
        "too few proposals succeeded for a meaningful test: {}",
        acked.len()
    );

    c.wait_leader(Duration::from_secs(20)).await;
    for n in &c.nodes {
        let have = eventually(
            Duration::from_secs(20),
            &format!("node {} converges", n.id),
            || async {
                let mut cl = n.client().await.ok()?;
                let r = cl
                    .list_masters(pb::ListMastersRequest {})
                    .await
                    .ok()?
                    .into_inner();
                let names: BTreeSet<String> = r.masters.into_iter().map(|m| m.name).collect();
                acked.is_subset(&names).then_some(names)
            },
        )
        .await;
        let missing: Vec<_> = acked.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "node {} lost acknowledged proposals {missing:?}",
            n.id
        );
    }
    eprintln!(
        "{} acknowledged proposals all present on every node after {ROUNDS} kill -9 rounds",
        acked.len()
    );
}
