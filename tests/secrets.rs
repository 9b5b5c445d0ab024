//! No secret ever appears in logs, INFO, Sentinel replies, metrics or ctl output, even with
//! debug logging, after passwords were set in the config and changed at runtime.

mod support;

use std::time::Duration;

use support::resp::RespClient;
use support::{eventually, http_get_raw, Cluster, ClusterOpts, MasterToml, RedisProcess};

const REDIS_PW: &str = "redis-pw-7f3a9c";
const NEW_REDIS_PW: &str = "rotated-pw-51e0d2";
const CLIENT_PW: &str = "client-pw-c0ffee";
const API_PW: &str = "api-pw-4b1d9e";
const CLUSTER_SECRET: &str = "cluster-secret-8e2f60a17c";

fn assert_clean(what: &str, text: &str) {
    for secret in [REDIS_PW, NEW_REDIS_PW, CLIENT_PW, API_PW, CLUSTER_SECRET] {
        assert!(!text.contains(secret), "{what} contains a secret:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_secret() {
    let m = RedisProcess::start(&["--requirepass", REDIS_PW]);
    let _r =
        RedisProcess::start_replica(&m, &["--masterauth", REDIS_PW, "--requirepass", REDIS_PW]);
    let c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        // Debug logging everywhere: the most a log can show.
        log_filter: Some("debug,raft_rs=debug".into()),
        api_password: Some(API_PW.into()),
        cluster_secret: Some(CLUSTER_SECRET.into()),
        extra_toml: format!(
            "[security]\nrequirepass = \"{CLIENT_PW}\"\n\n{}",
            MasterToml::new("mymaster", m.addr(), 2)
                .set("down_after_ms", 1000)
                .text("auth_pass", REDIS_PW)
        ),
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    // Lookups on the Sentinel port need a leader lease (a node without one drops the
    // connection); a leader that has only just been elected may not have one yet.
    eventually(
        Duration::from_secs(20),
        "every node has leader contact",
        || async {
            for n in &c.nodes {
                if !n.status().await?.leader_contact {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    let mut conn = RespClient::connect(&c.nodes[0].sentinel_addr()).await;
    let v = conn.cmd(&["AUTH", CLIENT_PW]).await;
    assert_eq!(v.text().as_deref(), Some("OK"));
    // The monitor authenticates and finds the replica.
    eventually(Duration::from_secs(20), "replica discovered", || async {
        let (code, out, _) = c.ctl(&["master", "mymaster", "--json"]);
        (code == 0 && out.contains("\"replicas\":[{")).then_some(())
    })
    .await;
    // Rotate the Redis password at runtime, through the log.
    let mut admin = RespClient::connect(&c.nodes[1].sentinel_addr()).await;
    admin.cmd(&["AUTH", CLIENT_PW]).await;
    let v = admin
        .cmd(&["SENTINEL", "SET", "mymaster", "auth-pass", NEW_REDIS_PW])
        .await;
    assert_eq!(v.text().as_deref(), Some("OK"));
    for cmd in [
        &["SENTINEL", "MASTER", "mymaster"][..],
        &["SENTINEL", "MASTERS"],
        &["SENTINEL", "REPLICAS", "mymaster"],
        &["SENTINEL", "CONFIG", "GET", "*"],
        &["INFO"],
        &["INFO", "all"],
        &["CLIENT", "LIST"],
    ] {
        let raw = conn.raw(cmd).await;
        assert_clean(&format!("{cmd:?}"), &String::from_utf8_lossy(&raw));
    }
    for args in [
        &["master", "mymaster", "--json"][..],
        &["masters", "--json"],
        &["status", "--json"],
    ] {
        let (_, out, err) = c.ctl(args);
        assert_clean(&format!("ctl {args:?}"), &format!("{out}{err}"));
    }
    // Refused calls (no password, a wrong one, one that is the secret with a typo) say nothing
    // about the secret either, in the reply or the log.
    for env in [None, Some("wrong"), Some(&API_PW[..API_PW.len() - 1])] {
        let mut cmd = std::process::Command::new(support::BIN);
        cmd.args(["ctl", "--endpoint", &c.endpoints(), "pause", "mymaster"]);
        if let Some(pw) = env {
            cmd.env("RAFT_SENTINEL_PASSWORD", pw);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(6), "refused as unauthenticated");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean("refused ctl", &text);
    }
    for n in &c.nodes {
        assert_clean(
            "metrics",
            &http_get_raw(n.metrics_port, "/metrics").expect("GET /metrics"),
        );
        assert_clean(
            "ready",
            &http_get_raw(n.metrics_port, "/ready").expect("GET /ready"),
        );
    }
    // Let the nodes log a while (probes, the +set event, reconnects with the new password).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut redacted = 0;
    for n in &c.nodes {
        let log = std::fs::read_to_string(&n.log).unwrap();
        assert!(
            log.contains("+set"),
            "the +set event is logged on node {}",
            n.id
        );
        assert_clean(&format!("node {} log", n.id), &log);
        redacted += log.matches("bytes redacted").count();
    }
    // Raft's debug output (message dumps with entry payloads) was on, and was redacted.
    assert!(
        redacted > 0,
        "expected raft debug message dumps in the logs"
    );
}
