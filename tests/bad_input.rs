//! Bad input gets a clear error and never a panic: bad configs (exit 64), corrupt, truncated
//! or foreign data dirs, and Raft messages from nodes that are not members.

mod support;

use std::process::Command;
use std::time::Duration;

use raft::eraftpb::{Message, MessageType};
use raft_sentinel::pb::peer::raft_peer_client::RaftPeerClient;
use raft_sentinel::pb::peer::RaftBatch;
use support::{catches_sigterm, free_port, Cluster, ClusterOpts, NodeToml, BIN};

fn run_with(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        config.replace("DATA", &dir.path().join("data").display().to_string()),
    )
    .unwrap();
    run_config(&path)
}

fn run_config(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["run", "--config", &path.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked: {stderr}"
    );
    (out.status.code().unwrap_or(-1), stderr)
}

fn one_node_config(data: &str) -> String {
    let ports = [free_port(), free_port(), free_port(), free_port()];
    NodeToml::new(1, data)
        .listen("127.0.0.1", ports)
        .peer(1, "127.0.0.1:7701")
        .render()
}

#[test]
fn bad_configs_exit_64_naming_the_problem() {
    let base = one_node_config("DATA");
    let cases = [
        (format!("{base}\nunknown_key = 1\n"), "unknown_key"),
        (
            format!("{base}\n[[peers]]\nid = 1\naddr = \"127.0.0.1:7702\"\n"),
            "duplicate node id 1",
        ),
        (
            base.replace("node_id = 1", "node_id = 7"),
            "missing from peers",
        ),
        (
            format!("{base}\n[raft]\nelection_ticks = 1\n"),
            "raft.election_ticks",
        ),
        ("node_id = [".to_string(), "config file"),
    ];
    for (text, want) in cases {
        let (code, err) = run_with(&text);
        assert_eq!(code, 64, "expected exit 64 for '{want}', got {code}: {err}");
        assert!(err.contains(want), "expected '{want}' in: {err}");
    }
    let (code, err) = run_config(std::path::Path::new("/nonexistent/raft-sentinel.toml"));
    assert_eq!(code, 64);
    assert!(err.contains("cannot read config file"), "{err}");
}

/// A malformed `--peer` is a usage error of the command line (exit 2, like any malformed
/// flag), for `run` and `import-sentinel-conf` alike, saying what is wrong with it.
#[test]
fn bad_peer_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        one_node_config(&dir.path().join("d").display().to_string()),
    )
    .unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(&conf, "sentinel monitor mymaster 127.0.0.1 6379 1\n").unwrap();
    let cfg = cfg.display().to_string();
    let conf = conf.display().to_string();
    for (peer, want) in [
        ("127.0.0.1:7701", "is not ID=HOST:PORT (no '=')"),
        ("one=127.0.0.1:7701", "'one' is not a node id"),
        ("1=127.0.0.1:http", "has an invalid port"),
        ("1=:7701", "has an invalid host"),
    ] {
        let flag = format!("--peer={peer}");
        for args in [
            vec!["run", "--config", &cfg, &flag],
            vec!["import-sentinel-conf", &conf, "--node-id", "1", &flag],
        ] {
            let out = Command::new(BIN).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(&format!(
                    "invalid value '{peer}' for '--peer <ID=HOST:PORT>'"
                )) && err.contains(want),
                "{args:?}: {err}"
            );
        }
    }
}

#[test]
fn corrupt_and_foreign_data_dirs_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("raft.redb"), vec![0xAB; 8192]).unwrap();
    let (code, err) = run_with(&one_node_config(&data.display().to_string()));
    assert_ne!(code, 0);
    assert_ne!(code, 64, "a data problem is not a config problem");
    assert!(err.contains("corrupt data dir"), "{err}");

    // A data dir path that cannot be used as a directory.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (code, err) = run_with(&one_node_config(&file.display().to_string()));
    assert_ne!(code, 0);
    assert!(err.contains("cannot create data dir"), "{err}");

    // A data dir that belongs to another node id.
    let dir2 = tempfile::tempdir().unwrap();
    let data2 = dir2.path().join("data");
    let cfg1 = dir2.path().join("n1.toml");
    std::fs::write(&cfg1, one_node_config(&data2.display().to_string())).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", &cfg1.display().to_string()])
        .spawn()
        .unwrap();
    // Started (its data dir stamped with its id) once it waits for SIGTERM.
    // Up to 10 s in 20 ms steps (blocking code: no tokio clock here).
    for tries in 0.. {
        if catches_sigterm(child.id()) {
            break;
        }
        assert!(tries < 500, "the node never finished starting");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the node exited at start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let st = child.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(0),
        "SIGTERM must shut the node down cleanly"
    );
    let out = Command::new(BIN)
        .args([
            "run",
            "--config",
            &cfg1.display().to_string(),
            "--node-id",
            "2",
            "--peer",
            "2=127.0.0.1:7702",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("belongs to node 1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The same data dir, truncated: refused, not silently reset.
    let file = data2.join("raft.redb");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let (code, err) = run_config(&cfg1);
    assert_ne!(code, 0, "a truncated database must not start: {err}");
    assert!(
        err.contains("data dir") || err.contains("raft storage"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_messages_from_strangers_are_rejected() {
    let c = Cluster::start(ClusterOpts::default());
    let leader = c.wait_leader(Duration::from_secs(20)).await;
    let target = c.nodes.iter().find(|n| n.id != leader).unwrap();
    let mut client = RaftPeerClient::connect(format!("http://{}", target.peer_addr()))
        .await
        .unwrap();
    let heartbeat = |from: u64| {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.from = from;
        m.to = target.id;
        m.term = 1_000_000;
        raft_sentinel::consensus::encode(&m)
    };
    let batch = |cluster: &str, from: u64, msgs: Vec<Vec<u8>>| RaftBatch {
        cluster_id: cluster.into(),
        from,
        to: target.id,
        msgs,
        mac: Vec::new(),
    };
    // Not a member.
    let e = client
        .send(batch("raft-sentinel", 99, vec![heartbeat(99)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    assert!(e.message().contains("not a member"));
    // Another cluster.
    let e = client
        .send(batch("other-cluster", leader, vec![heartbeat(leader)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    // A member id inside a batch, but the message claims someone else.
    let e = client
        .send(batch("raft-sentinel", leader, vec![heartbeat(99)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // Garbage bytes.
    let e = client
        .send(batch("raft-sentinel", leader, vec![vec![0xff, 0x01, 0x02]]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // The cluster is undisturbed: same leader, a term nobody bumped, and it still commits.
    let st = target.status().await.unwrap();
    assert_eq!(st.leader_id, leader);
    assert!(st.term < 1_000_000);
    let mut api = c.node(leader).client().await.unwrap();
    api.monitor(raft_sentinel::pb::api::MonitorRequest {
        name: "still-works".into(),
        host: "127.0.0.1".into(),
        port: 6379,
        quorum: 1,
        ..Default::default()
    })
    .await
    .unwrap();
}
