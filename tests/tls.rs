//! Mutual TLS on the peer and API ports: a cluster with mTLS elects a leader and fails over;
//! a client with no certificate, or with one from another CA, is refused on both ports.

mod support;

use std::time::Duration;

use raft_sentinel::pb::api as pb;
use raft_sentinel::pb::peer::raft_peer_client::RaftPeerClient;
use raft_sentinel::pb::peer::RaftBatch;
use support::tls::{make_pki, TlsFiles};
use support::{eventually, Cluster, ClusterOpts, MasterToml, RedisProcess};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

fn read(p: &std::path::Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Connects to `addr` trusting `ca`, presenting `client` (None: no certificate).
async fn channel(
    addr: &str,
    ca: &TlsFiles,
    client: Option<&TlsFiles>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&ca.ca)));
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(read(&c.cert), read(&c.key)));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .tls_config(tls)?
        .connect()
        .await
}

/// A batch from node 1 to node 2 with no messages and no MAC.
fn empty_batch() -> RaftBatch {
    RaftBatch {
        cluster_id: "raft-sentinel".into(),
        from: 1,
        to: 2,
        msgs: vec![],
        mac: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_cluster_fails_over_and_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let good = make_pki(&dir.path().join("cluster"), "cluster");
    let rogue = make_pki(&dir.path().join("rogue"), "rogue");
    let m = RedisProcess::start(&[]);
    let _r1 = RedisProcess::start_replica(&m, &[]);
    let mut m = m;
    let c = Cluster::start(ClusterOpts {
        tls: Some(good.clone()),
        ..ClusterOpts::watching(
            MasterToml::new("mymaster", m.addr(), 2)
                .set("down_after_ms", 500)
                .set("failover_timeout_ms", 5000),
        )
    });
    c.wait_leader(Duration::from_secs(20)).await;
    // ctl with the cluster's client certificate works.
    let (code, out, err) = c.ctl(&["status", "--json"]);
    assert_eq!(code, 0, "{out}{err}");

    // The API port: no certificate, or another CA's, is refused.
    let api = c.nodes[0].grpc_addr();
    let stranger = match channel(&api, &good, None).await {
        Err(_) => true,
        Ok(ch) => pb::coordinator_client::CoordinatorClient::new(ch)
            .cluster_status(pb::ClusterStatusRequest {})
            .await
            .is_err(),
    };
    assert!(
        stranger,
        "the API port answered a client without a certificate"
    );
    let rogue_ok = match channel(&api, &good, Some(&rogue)).await {
        Err(_) => false,
        Ok(ch) => pb::coordinator_client::CoordinatorClient::new(ch)
            .cluster_status(pb::ClusterStatusRequest {})
            .await
            .is_ok(),
    };
    assert!(
        !rogue_ok,
        "the API port answered a client with another CA's certificate"
    );
    // Plain text is refused too (ctl without TLS options).
    let out = std::process::Command::new(support::BIN)
        .args(["ctl", "--endpoint", &api, "--timeout-ms", "2000", "status"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));

    // The peer port: a node without a valid certificate cannot send Raft messages.
    let peer = c.nodes[1].peer_addr();
    for client in [None, Some(&rogue)] {
        let sent = match channel(&peer, &good, client).await {
            Err(_) => false,
            Ok(ch) => RaftPeerClient::new(ch).send(empty_batch()).await.is_ok(),
        };
        assert!(
            !sent,
            "peer port accepted a batch from a client with {:?}",
            client.map(|c| &c.cert)
        );
    }
    // With the cluster's certificate the same empty batch goes through (the check above is
    // about the certificate, not the payload).
    let ch = channel(&peer, &good, Some(&good)).await.unwrap();
    RaftPeerClient::new(ch).send(empty_batch()).await.unwrap();

    // And the cluster still fails over.
    eventually(Duration::from_secs(20), "replica known", || async {
        let r = support::get_master(&c.nodes[0], "mymaster").await?;
        (r.master?.num_replicas >= 1).then_some(())
    })
    .await;
    m.kill9();
    eventually(Duration::from_secs(30), "failover under mTLS", || async {
        for n in &c.nodes {
            let mm = support::get_master(n, "mymaster").await?.master?;
            if mm.config_epoch == 0 || format!("{}:{}", mm.host, mm.port) == m.addr() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[test]
fn missing_or_non_pem_tls_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, b"not a certificate").unwrap();
    for (cert, want) in [
        ("/nonexistent/cert.pem", "cannot read"),
        (bogus.to_str().unwrap(), "not a PEM file"),
    ] {
        let cfg = support::NodeToml::new(1, dir.path().join("d").display())
            .peer(1, "127.0.0.1:7701")
            .new_cluster()
            .tls(std::path::Path::new(cert), &bogus, &bogus)
            .write(&dir.path().join("c.toml"));
        let out = std::process::Command::new(support::BIN)
            .args(["run", "--config", &cfg.display().to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(
            err.contains("security.tls.cert") && err.contains(want),
            "{err}"
        );
    }
}

/// A certificate that is PEM but not a certificate passes the config check (which reads the
/// files) and is refused only when the Sentinel port builds its TLS acceptor, once the node's
/// other runtimes already run: the node must exit with the error, not panic.
#[test]
fn unusable_sentinel_certificate_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let cfg = support::NodeToml::new(1, dir.path().join("d").display())
        .listen("127.0.0.1", [0; 4])
        .peer(1, "127.0.0.1:7701")
        .new_cluster()
        .security(
            "sentinel_tls",
            format!(
                "{{ cert = \"{}\", key = \"{}\" }}",
                cert.display(),
                key.display()
            ),
        )
        .write(&dir.path().join("c.toml"));
    let out = std::process::Command::new(support::BIN)
        .args(["run", "--config", &cfg.display().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("raft-sentinel: tls:"), "{err}");
}

fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && !text.contains("Error") && !text.contains("Could not"),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_port_over_tls_with_and_without_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(&dir.path().join("port"), "port");
    let m = RedisProcess::start(&[]);
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    for require_client_cert in [false, true] {
        let ca_line = if require_client_cert {
            format!(", ca = \"{ca}\"")
        } else {
            String::new()
        };
        let c = Cluster::start(ClusterOpts::watching(format!(
            "[security]\nsentinel_tls = {{ cert = \"{cert}\", key = \"{key}\"{ca_line} }}\n\n{}",
            MasterToml::new("mymaster", m.addr(), 2)
        )));
        c.wait_leader(Duration::from_secs(20)).await;
        let port = c.nodes[0].sentinel_port.to_string();
        let mut tls_args = vec!["--tls", "--cacert", &ca, "-h", "127.0.0.1", "-p", &port];
        if require_client_cert {
            // Without a client certificate the handshake is refused.
            let mut no_cert = tls_args.clone();
            no_cert.extend(["SENTINEL", "get-master-addr-by-name", "mymaster"]);
            let (ok, text) = redis_cli(&no_cert);
            assert!(!ok, "client without a certificate was served: {text}");
            tls_args.extend(["--cert", &cert, "--key", &key]);
        }
        let mut args = tls_args.clone();
        args.extend(["SENTINEL", "get-master-addr-by-name", "mymaster"]);
        let (text, _) = eventually(Duration::from_secs(10), "answer over TLS", || {
            let (ok, text) = redis_cli(&args);
            async move { (ok && text.contains(&m.port.to_string())).then_some((text, ())) }
        })
        .await;
        assert!(text.contains("127.0.0.1"), "{text}");
        // Plain text is not served on a TLS port.
        let (ok, text) = redis_cli(&["-h", "127.0.0.1", "-p", &port, "PING"]);
        assert!(
            !ok || !text.contains("PONG"),
            "plain client was served: {text}"
        );
    }
}
