//! Authentication with the real binary: the gRPC API refuses every method without the
//! credential (walking the methods from the API's descriptor, so a new RPC cannot be missed),
//! `ctl` passes it, the peer port refuses Raft batches without the cluster secret's MAC, and a
//! node refuses to expose unprotected ports.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use prost::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft_sentinel::api::auth::READ_ONLY_METHODS;
use raft_sentinel::net::ClusterKey;
use raft_sentinel::pb::peer::raft_peer_client::RaftPeerClient;
use raft_sentinel::pb::peer::RaftBatch;
use support::netns::NetLab;
use support::{eventually, free_port, Cluster, ClusterOpts, NodeToml, BIN};
use tonic::transport::Channel;
use tonic::{Code, Status};

const API_PW: &str = "api-test-pw-31f7";
const SECRET: &str = "cluster-test-secret-0d9a5e77";

/// Every method of `raftsentinel.v1.Coordinator`, from the descriptor the server is built from.
fn api_methods() -> Vec<String> {
    let fds =
        prost_types::FileDescriptorSet::decode(raft_sentinel::pb::API_FILE_DESCRIPTOR_SET).unwrap();
    let methods: Vec<String> = fds
        .file
        .iter()
        .flat_map(|f| &f.service)
        .filter(|s| s.name() == "Coordinator")
        .flat_map(|s| &s.method)
        .map(|m| m.name().to_string())
        .collect();
    assert!(methods.len() >= 16, "descriptor walk found {methods:?}");
    for r in READ_ONLY_METHODS {
        assert!(
            methods.iter().any(|m| m == r),
            "read-only method {r} is not in the API"
        );
    }
    methods
}

fn one_node(api_open_reads: bool) -> Cluster {
    Cluster::start(ClusterOpts {
        nodes: 1,
        api_password: Some(API_PW.into()),
        api_open_reads,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"127.0.0.1:{}\"\nquorum = 1\n",
            free_port()
        ),
        ..ClusterOpts::default()
    })
}

/// Calls `method` with an empty request, as any gRPC client could; Ok when the call got past
/// authentication to a reply or a stream.
async fn raw_call(ch: &Channel, method: &str, authorization: Option<&str>) -> Result<(), Status> {
    let mut g = tonic::client::Grpc::new(ch.clone());
    g.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let path = format!("/raftsentinel.v1.Coordinator/{method}")
        .parse()
        .unwrap();
    let mut req = tonic::Request::new(());
    if let Some(a) = authorization {
        req.metadata_mut()
            .insert("authorization", a.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut stream = g.server_streaming(req, path, codec).await?.into_inner();
    // A watch stream may stay open: being inside it is enough.
    match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
        Ok(r) => r.map(|_| ()),
        Err(_) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_method_needs_the_credential() {
    let methods = api_methods();
    let c = one_node(false);
    c.wait_leader(Duration::from_secs(20)).await;
    let ch = support::plain_channel(&c.nodes[0].grpc_addr()).await;
    let wrong = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {}", &API_PW[..API_PW.len() - 1])),
        Some(format!("Bearer {API_PW}x")),
        Some(format!("Token {API_PW}")),
    ];
    for m in &methods {
        for auth in &wrong {
            let e = raw_call(&ch, m, auth.as_deref())
                .await
                .expect_err(&format!("{m} with {auth:?} must be refused"));
            assert_eq!(e.code(), Code::Unauthenticated, "{m} with {auth:?}: {e:?}");
            assert_eq!(e.message(), "unauthenticated", "no detail: {e:?}");
        }
        // The right credential gets past authentication (empty requests are then refused or
        // answered on their merits).
        let ok = format!("Bearer {API_PW}");
        if let Err(e) = raw_call(&ch, m, Some(&ok)).await {
            assert_ne!(
                e.code(),
                Code::Unauthenticated,
                "{m} with the password: {e:?}"
            );
        }
    }
    // Health stays open for probes.
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    h.check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health needs no credential");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reads_open_the_read_only_methods_and_nothing_else() {
    let methods = api_methods();
    let c = one_node(true);
    c.wait_leader(Duration::from_secs(20)).await;
    let ch = support::plain_channel(&c.nodes[0].grpc_addr()).await;
    let mut opened = BTreeSet::new();
    for m in &methods {
        match raw_call(&ch, m, None).await {
            Err(e) if e.code() == Code::Unauthenticated => {}
            _ => {
                opened.insert(m.as_str());
            }
        }
    }
    assert_eq!(opened, READ_ONLY_METHODS.into_iter().collect());
}

/// ctl subcommands that change something, each with arguments that would succeed.
const MUTATING: &[&[&str]] = &[
    &["failover", "mymaster"],
    &["switchover", "mymaster"],
    &["monitor", "other", "127.0.0.1", "1", "1"],
    &["remove", "mymaster"],
    &["set", "mymaster", "quorum", "1"],
    &["reset", "*"],
    &["pause", "mymaster"],
    &["resume", "mymaster"],
    &["add-node", "--id", "9", "--addr", "127.0.0.1:1"],
    &["remove-node", "--id", "1"],
    &["replace-node", "--id", "1"],
    &["transfer-leader", "--to", "1"],
    &["bench", "--count", "2"],
];

fn ctl(c: &Cluster, env: Option<&str>, extra: &[&str], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["ctl", "--endpoint", &c.endpoints(), "--timeout-ms", "3000"])
        .env_remove("RAFT_SENTINEL_PASSWORD")
        .args(extra)
        .args(args);
    if let Some(pw) = env {
        cmd.env("RAFT_SENTINEL_PASSWORD", pw);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_without_credentials_changes_nothing_and_with_them_works() {
    // requirepass and no separate API password: the API takes requirepass.
    let c = Cluster::start(ClusterOpts {
        nodes: 1,
        extra_toml: format!(
            "[security]\nrequirepass = \"{API_PW}\"\n\n[[masters]]\nname = \"mymaster\"\naddr = \"127.0.0.1:{}\"\nquorum = 1\n",
            free_port()
        ),
        ..ClusterOpts::default()
    });
    // The test helpers' client carries no password here: wait through ctl.
    eventually(Duration::from_secs(20), "a leader", || async {
        let (code, out) = ctl(&c, Some(API_PW), &[], &["status", "--json"]);
        (code == 0 && !out.contains("\"leader_id\":0")).then_some(())
    })
    .await;
    let wrong = c.nodes[0].config.with_file_name("wrong.pw");
    std::fs::write(&wrong, "not-it\n").unwrap();
    let wrong_arg = wrong.display().to_string();
    for args in MUTATING {
        for (env, extra) in [
            (None, &[][..]),
            (Some("not-it"), &[][..]),
            (None, &["--password-file", wrong_arg.as_str()][..]),
            (Some(API_PW), &["--user", "admin"][..]),
        ] {
            let (code, out) = ctl(&c, env, extra, args);
            assert_eq!(code, 6, "ctl {args:?} {extra:?} must be refused: {out}");
            assert!(
                out.contains("Unauthenticated") || out.contains("unauthenticated"),
                "{out}"
            );
            assert!(!out.contains(API_PW), "{out}");
        }
    }
    for args in [&["status"][..], &["masters"], &["get-master", "mymaster"]] {
        let (code, out) = ctl(&c, None, &[], args);
        assert_eq!(code, 6, "ctl {args:?} without credentials: {out}");
    }
    // Nothing changed: the master is still monitored, unpaused, never failed over.
    let (code, out) = ctl(&c, Some(API_PW), &[], &["masters", "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let masters = v["masters"].as_array().expect("a list of masters");
    assert_eq!(masters.len(), 1, "{out}");
    assert_eq!(masters[0]["name"], "mymaster", "{out}");
    assert_eq!(masters[0]["quorum"], 1, "{out}");
    assert_eq!(masters[0]["config_epoch"], 0, "{out}");
    assert_eq!(masters[0]["paused"], false, "{out}");
    assert_eq!(v["current_epoch"], 0, "{out}");
    // The credential from the environment, a file, and with the default user all work.
    let (code, out) = ctl(&c, Some(API_PW), &[], &["pause", "mymaster"]);
    assert_eq!(code, 0, "{out}");
    let good = c.nodes[0].config.with_file_name("good.pw");
    std::fs::write(&good, format!("{API_PW}\n")).unwrap();
    let good_arg = good.display().to_string();
    let (code, out) = ctl(
        &c,
        None,
        &["--password-file", &good_arg],
        &["resume", "mymaster"],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = ctl(
        &c,
        None,
        &["--password-file", &good_arg, "--user", "default"],
        &["pause", "mymaster"],
    );
    assert_eq!(code, 0, "{out}");
    // A missing password file is its own error, not an unreachable node.
    let (code, out) = ctl(
        &c,
        None,
        &["--password-file", "/nonexistent/pw"],
        &["status"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--password-file"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_raft_batch_without_the_secret_is_rejected_and_changes_nothing() {
    let c = Cluster::start(ClusterOpts {
        cluster_secret: Some(SECRET.into()),
        ..ClusterOpts::default()
    });
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let target = c.nodes.iter().find(|n| n.id != leader).unwrap();
    let term = target.status().await.unwrap().term;
    let forged_term = term + 100;
    // What a forger can guess: the cluster id, the leader's id, the target's id.
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = leader;
    m.to = target.id;
    m.term = forged_term;
    let mut batch = RaftBatch {
        cluster_id: "raft-sentinel".into(),
        from: leader,
        to: target.id,
        msgs: vec![raft_sentinel::consensus::encode(&m)],
        mac: Vec::new(),
    };
    let mut client = RaftPeerClient::connect(format!("http://{}", target.peer_addr()))
        .await
        .unwrap();
    let other_key = ClusterKey::new(b"a-different-secret-of-some-length");
    for mac in [
        Vec::new(),
        vec![0u8; 32],
        other_key.sign(&batch),
        ClusterKey::new(SECRET.as_bytes()).sign(&batch)[..31].to_vec(),
    ] {
        batch.mac = mac;
        let e = client.send(batch.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        assert_eq!(e.message(), "unauthenticated", "no detail: {e:?}");
    }
    // A negative window: a forged term taken would show within an election timeout.
    tokio::time::sleep(c.election_timeout()).await;
    let st = target.status().await.unwrap();
    assert!(st.term < forged_term, "the forged term was taken: {st:?}");
    assert_eq!(st.leader_id, leader);
    // The same batch with the secret's MAC is accepted, and does move the term: the check
    // above would have seen a forgery that got through.
    batch.mac = ClusterKey::new(SECRET.as_bytes()).sign(&batch);
    client
        .send(batch)
        .await
        .expect("a signed batch is accepted");
    eventually(
        Duration::from_secs(5),
        "the signed term is taken",
        || async { (target.status().await?.term >= forged_term).then_some(()) },
    )
    .await;
}

fn exposed_config(dir: &std::path::Path, host: &str, security: &str) -> std::path::PathBuf {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    NodeToml::new(1, dir.join("data").display())
        .listen(host, ports)
        .peer(1, format!("{host}:7701"))
        .extra(security)
        .write(&dir.join("node.toml"))
}

#[test]
fn exposed_ports_without_tls_or_secrets_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let short = dir.path().join("short.secret");
    std::fs::write(&short, "tooshort\n").unwrap();
    let cases = [
        ("", "listen.peer"),
        (
            &*format!(
                "[security]\ncluster_secret_file = \"{}\"\n",
                secret.display()
            ),
            "listen.grpc",
        ),
        (
            &*format!(
                "[security]\ncluster_secret_file = \"{}\"\napi_password = \"x\"\n",
                short.display()
            ),
            "fewer than 16 bytes",
        ),
    ];
    for (security, want) in cases {
        // Refused before any port is bound, so 0.0.0.0 is safe to name here.
        let cfg = exposed_config(dir.path(), "0.0.0.0", security);
        let out = Command::new(BIN)
            .args(["run", "--config", &cfg.display().to_string()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{security}: {err}");
        assert!(err.contains(want), "expected '{want}' in: {err}");
        if want.starts_with("listen.") {
            assert!(
                err.contains("--insecure") && err.contains("not a loopback address"),
                "{err}"
            );
        }
        assert!(!err.contains(SECRET), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_flag_starts_with_a_warning() {
    assert!(
        NetLab::available(),
        "this test needs network namespaces (run the test suite as root)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut lab = NetLab::new(1);
    let ip = lab.hosts[0].ip.clone();
    let cfg = exposed_config(dir.path(), &ip, "");
    let log = dir.path().join("node.log");
    lab.spawn(
        0,
        BIN,
        &[
            "run".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--insecure".into(),
        ],
        &log,
    );
    eventually(Duration::from_secs(10), "the insecure warnings", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("INSECURE") && text.contains("listen.peer") && text.contains("listen.grpc"))
            .then_some(())
    })
    .await;
    // It runs, and its API answers without credentials, as it warned.
    let grpc = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("grpc = \"")
                .map(|a| a.trim_end_matches('"').to_string())
        })
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "ctl status in the namespace",
        || async {
            let out = lab
                .command(0, BIN)
                .args(["ctl", "--endpoint", &grpc, "status", "--json"])
                .env_remove("RAFT_SENTINEL_PASSWORD")
                .output()
                .ok()?;
            out.status.success().then_some(())
        },
    )
    .await;
}
