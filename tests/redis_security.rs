//! Redis with TLS only (rediss, CA verified, client certificates) and with an ACL user:
//! monitored and failed over.

mod support;

use std::time::Duration;

use raft_sentinel::pb::api as pb;
use support::tls::make_pki;
use support::{eventually, Cluster, ClusterOpts, NodeProcess, RedisProcess};

async fn master_of(n: &NodeProcess) -> Option<(String, u64, usize)> {
    let mut c = n.client().await.ok()?;
    let d = c
        .get_master_detail(pb::GetMasterDetailRequest {
            name: "mymaster".into(),
        })
        .await
        .ok()?
        .into_inner();
    let m = d.master?;
    let up = d.replicas.iter().filter(|r| r.master_link_up).count();
    Some((format!("{}:{}", m.host, m.port), m.config_epoch, up))
}

/// Waits for a replica seen in sync, kills the master, and waits until every node agrees on
/// a new master at a new epoch.
async fn fail_over(c: &Cluster, master: &mut RedisProcess) -> String {
    let old = master.addr();
    eventually(
        Duration::from_secs(30),
        "replica monitored and in sync",
        || async {
            let (addr, _, up) = master_of(&c.nodes[0]).await?;
            (addr == old && up >= 1).then_some(())
        },
    )
    .await;
    master.kill9();
    eventually(
        Duration::from_secs(30),
        "every node switched to the replica",
        || async {
            let mut new = None;
            for n in &c.nodes {
                let (addr, epoch, _) = master_of(n).await?;
                if addr == old || epoch == 0 || new.as_ref().is_some_and(|a| *a != addr) {
                    return None;
                }
                new = Some(addr);
            }
            new
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_is_monitored_and_failed_over() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("redis-pki"), "redis");
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    // TLS only (no plain port), client certificates required, replication over TLS too.
    let tls_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--tls-port",
            "PORT",
            "--port",
            "0",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(
            [
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "yes",
                "--tls-replication",
                "yes",
            ]
            .map(String::from),
        );
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut master = RedisProcess::start_tls(&tls_args(&[]));
    let replica_of = master.port.to_string();
    let _replica = RedisProcess::start_tls(&tls_args(&["--replicaof", "127.0.0.1", &replica_of]));
    let c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        extra_toml: format!(
            "[security]\nredis_tls = {{ ca = \"{ca}\", cert = \"{cert}\", key = \"{key}\" }}\n\n[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = 500\nfailover_timeout_ms = 5000\ntls = true\n",
            master.addr()
        ),
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    let new = fail_over(&c, &mut master).await;
    assert_eq!(new, _replica.addr());
}

/// The rules of the least-privilege user documented in deploy/README.md.
const LEAST_PRIVILEGE: &str = "on >acl-pw resetkeys resetchannels -@all +ping +info +role +multi +exec +discard +replicaof +config|rewrite +config|get +config|set +client|kill +client|pause +client|unpause +client|setname +failover +hello +auth";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acl_user_is_monitored_and_failed_over() {
    let mut master = RedisProcess::start(&[]);
    let replica = RedisProcess::start_replica(&master, &[]);
    // The least-privilege user of deploy/README.md, on every instance.
    for r in [&master, &replica] {
        let mut c = r.client();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("raft-sentinel")
            .arg(LEAST_PRIVILEGE.split_whitespace().collect::<Vec<_>>())
            .query(&mut c)
            .expect("ACL SETUSER");
    }
    let c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = 500\nfailover_timeout_ms = 5000\nauth_user = \"raft-sentinel\"\nauth_pass = \"acl-pw\"\n",
            master.addr()
        ),
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    // The documented least-privilege ACL passes the start-up check.
    eventually(
        Duration::from_secs(20),
        "ACL check passed for the master",
        || async {
            let log = std::fs::read_to_string(&c.nodes[0].log).ok()?;
            log.lines()
                .any(|l| l.contains("Redis ACL check passed") && l.contains(&master.addr()))
                .then_some(())
        },
    )
    .await;
    let log = std::fs::read_to_string(&c.nodes[0].log).unwrap();
    assert!(!log.contains("lacks:"), "the documented ACL must be enough");
    let new = fail_over(&c, &mut master).await;
    assert_eq!(new, replica.addr());
    assert_eq!(replica.role().as_deref(), Some("master"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_check_names_missing_commands_and_changes_nothing() {
    let master = RedisProcess::start(&[]);
    let replica = RedisProcess::start_replica(&master, &[]);
    // A user without REPLICAOF and CONFIG REWRITE (everything else of the documented ACL).
    let partial = LEAST_PRIVILEGE
        .replace(" +replicaof", "")
        .replace(" +config|rewrite", "");
    for r in [&master, &replica] {
        let mut c = r.client();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("raft-sentinel")
            .arg(partial.split_whitespace().collect::<Vec<_>>())
            .query(&mut c)
            .expect("ACL SETUSER");
    }
    let c = Cluster::start(ClusterOpts {
        tick_ms: 20,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"{}\"\nquorum = 2\ndown_after_ms = 2000\nauth_user = \"raft-sentinel\"\nauth_pass = \"acl-pw\"\n",
            master.addr()
        ),
        ..ClusterOpts::default()
    });
    c.wait_leader(Duration::from_secs(20)).await;
    let line = eventually(
        Duration::from_secs(20),
        "the ACL check reports the missing commands",
        || async {
            let log = std::fs::read_to_string(&c.nodes[0].log).ok()?;
            log.lines()
                .find(|l| l.contains("lacks:") && l.contains(&master.addr()))
                .map(str::to_string)
        },
    )
    .await;
    assert!(
        line.contains("replicaof") && line.contains("config|rewrite"),
        "{line}"
    );
    assert!(
        !line.contains("ping") && !line.contains("client|kill"),
        "only what is missing: {line}"
    );
    // Nothing changed on the instances: roles intact (no REPLICAOF NO ONE ran).
    assert_eq!(master.role().as_deref(), Some("master"));
    assert_eq!(replica.role().as_deref(), Some("slave"));
}
