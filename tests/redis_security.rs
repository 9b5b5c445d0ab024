//! Redis with TLS only (rediss, CA verified, client certificates) and with an ACL user:
//! monitored and failed over.

mod support;

use std::time::Duration;

use raft_sentinel::instance::link::{Auth, Connector, LinkError, RedisTls};
use raft_sentinel::model::Addr;
use support::tls::{make_pki, TlsFiles};
use support::{eventually, Cluster, ClusterOpts, MasterToml, NodeProcess, RedisProcess};

async fn master_of(n: &NodeProcess) -> Option<(String, u64, usize)> {
    let d = n.master_detail("mymaster").await?;
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

/// `redis-server` arguments for TLS only (no plain port), client certificates required and
/// replication over TLS too, plus `extra`. For [`RedisProcess::start_tls`].
fn tls_only_args(pki: &TlsFiles, extra: &[&str]) -> Vec<String> {
    let path = |p: &std::path::Path| p.display().to_string();
    let mut v: Vec<String> = ["--tls-port", "PORT", "--port", "0"]
        .map(String::from)
        .to_vec();
    v.extend([
        "--tls-cert-file".to_string(),
        path(&pki.cert),
        "--tls-key-file".to_string(),
        path(&pki.key),
        "--tls-ca-cert-file".to_string(),
        path(&pki.ca),
        "--tls-auth-clients".to_string(),
        "yes".to_string(),
        "--tls-replication".to_string(),
        "yes".to_string(),
    ]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The TLS material for Redis belongs to the connector a node builds, not to the process:
/// connectors with different settings coexist in one process, in any order, and each one
/// alone decides whether a TLS connection is trusted and which client certificate it shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connector_uses_its_own_redis_tls_material() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("redis-pki"), "redis");
    let other = make_pki(&dir.path().join("other-pki"), "other");
    let redis = RedisProcess::start_tls(&tls_only_args(&pki, &[]));
    let addr: Addr = redis.addr().parse().unwrap();
    let auth = Auth {
        tls: true,
        ..Auth::default()
    };
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let with = |ca: &TlsFiles, client: Option<&TlsFiles>| {
        Connector::new(Some(RedisTls {
            ca: Some(read(&ca.ca)),
            client: client.map(|c| (read(&c.cert), read(&c.key))),
        }))
    };
    let good = with(&pki, Some(&pki));
    // Built before and after the good one: none of them may change what another does.
    let no_tls_material = Connector::new(None);
    let wrong_ca = with(&other, Some(&pki));
    let no_client_cert = with(&pki, None);
    // Generous: a TLS handshake on a loaded machine; the refusals below are not timeouts.
    let limit = Duration::from_secs(5);
    let ping = |c: Connector| {
        let (addr, auth) = (addr.clone(), auth.clone());
        async move {
            let mut link = c.connect(&addr, &auth, limit).await?;
            link.text(&redis::cmd("PING"), "PING", limit).await
        }
    };
    for (name, c) in [
        ("system roots only", no_tls_material.clone()),
        ("another CA", wrong_ca.clone()),
    ] {
        match ping(c).await {
            Err(LinkError::Connect { detail, .. }) => {
                assert!(!detail.contains("timed out"), "{name}: {detail}")
            }
            other => panic!("{name}: the server certificate must be refused, got {other:?}"),
        }
    }
    assert_eq!(ping(good.clone()).await.unwrap(), "PONG");
    // Redis requires a client certificate: without one the handshake or the first reply
    // fails, whatever the other connectors carry.
    assert!(
        ping(no_client_cert).await.is_err(),
        "a connector without a client certificate must not get through"
    );
    assert!(ping(no_tls_material).await.is_err());
    assert_eq!(ping(good).await.unwrap(), "PONG");
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
    let tls_args = |extra: &[&str]| tls_only_args(&pki, extra);
    let mut master = RedisProcess::start_tls(&tls_args(&[]));
    let replica_of = master.port.to_string();
    let _replica = RedisProcess::start_tls(&tls_args(&["--replicaof", "127.0.0.1", &replica_of]));
    let c = Cluster::start(ClusterOpts::watching(format!(
        "[security]\nredis_tls = {{ ca = \"{ca}\", cert = \"{cert}\", key = \"{key}\" }}\n\n{}",
        MasterToml::new("mymaster", master.addr(), 2)
            .set("down_after_ms", 500)
            .set("failover_timeout_ms", 5000)
            .set("tls", true)
    )));
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
        r.acl_setuser(
            "raft-sentinel",
            &LEAST_PRIVILEGE.split_whitespace().collect::<Vec<_>>(),
        );
    }
    let c = Cluster::start(ClusterOpts::watching(
        MasterToml::new("mymaster", master.addr(), 2)
            .set("down_after_ms", 500)
            .set("failover_timeout_ms", 5000)
            .text("auth_user", "raft-sentinel")
            .text("auth_pass", "acl-pw"),
    ));
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
        r.acl_setuser(
            "raft-sentinel",
            &partial.split_whitespace().collect::<Vec<_>>(),
        );
    }
    let c = Cluster::start(ClusterOpts::watching(
        MasterToml::new("mymaster", master.addr(), 2)
            .set("down_after_ms", 2000)
            .text("auth_user", "raft-sentinel")
            .text("auth_pass", "acl-pw"),
    ));
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
