//! gRPC API tests over the real binary. The partition test runs each node in its own network
//! namespace (root needed) and cuts one off the network.

mod support;

use std::path::Path;
use std::time::Duration;

use support::netns::NetLab;
use support::BIN;
use tokio::time::Instant;

/// Node `i` (0-based) of a lab cluster: config with every listener on 0.0.0.0 and the master
/// on the client host.
fn lab_config(lab: &NetLab, i: usize, dir: &Path, redis: &str) -> std::path::PathBuf {
    let mut s = format!(
        "node_id = {}\ndata_dir = \"{}\"\n[listen]\nsentinel = \"0.0.0.0:26379\"\ngrpc = \"0.0.0.0:7700\"\npeer = \"0.0.0.0:7701\"\nmetrics = \"0.0.0.0:9700\"\n",
        i + 1,
        dir.join(format!("data{}", i + 1)).display()
    );
    for j in 0..3 {
        s.push_str(&format!(
            "[[peers]]\nid = {}\naddr = \"{}:7701\"\n",
            j + 1,
            lab.hosts[j].ip
        ));
    }
    s.push_str("[raft]\ntick_ms = 50\nelection_ticks = 10\nheartbeat_ticks = 2\n");
    s.push_str(&format!(
        "[[masters]]\nname = \"mymaster\"\naddr = \"{redis}\"\nquorum = 2\ndown_after_ms = 1000\n"
    ));
    let p = dir.join(format!("node{}.toml", i + 1));
    std::fs::write(&p, s).unwrap();
    p
}

/// Runs `ctl` inside host `host` against `endpoints`; returns (exit code, stdout, stderr).
fn ctl(lab: &NetLab, host: usize, endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = lab
        .command(host, BIN)
        .args(["ctl", "--endpoint", endpoints, "--timeout-ms", "5000"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bad ctl json {e}: {out}"))
}

async fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        let cfg = lab_config(&lab, i, dir.path(), &redis);
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
    let (code, out, err) = ctl(
        &lab,
        3,
        &all,
        &["get-master", "mymaster", "--linearizable", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let before = json(&out);

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
    // Past two election timeouts the isolated node knows it has no leader contact.
    tokio::time::sleep(Duration::from_millis(1200)).await;
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
