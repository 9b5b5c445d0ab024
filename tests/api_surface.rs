//! What the public gRPC port serves, seen by generic gRPC tooling: only the Coordinator API,
//! health and reflection (v1 and v1alpha); the Raft peer service lives on the peer port only.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use raft_sentinel::pb::peer::raft_peer_client::RaftPeerClient;
use raft_sentinel::pb::peer::RaftBatch;
use support::{Cluster, ClusterOpts, NodeProcess};

/// The services the API port must list, and nothing else.
const PUBLIC: [&str; 4] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "raftsentinel.v1.Coordinator",
];

fn one_node() -> Cluster {
    // The master need not run: GetMaster answers from the replicated configuration.
    Cluster::start(ClusterOpts {
        nodes: 1,
        extra_toml: format!(
            "[[masters]]\nname = \"mymaster\"\naddr = \"127.0.0.1:{}\"\nquorum = 1\n",
            support::free_port()
        ),
        ..ClusterOpts::default()
    })
}

/// The services a node lists through server reflection of one version (`v1`, `v1alpha`):
/// the two versions are separate generated types with the same shape.
macro_rules! list_services {
    ($version:ident, $node:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        let what = concat!("reflection ", stringify!($version));
        let mut c = ServerReflectionClient::new(support::plain_channel(&$node.grpc_addr()).await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut replies = c
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect(what)
            .into_inner();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("a reflection reply");
        match reply.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => l
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<BTreeSet<String>>(),
            other => panic!("unexpected {what} reply {other:?}"),
        }
    }};
}

async fn services_v1(node: &NodeProcess) -> BTreeSet<String> {
    list_services!(v1, node)
}

async fn services_v1alpha(node: &NodeProcess) -> BTreeSet<String> {
    list_services!(v1alpha, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_port_serves_and_lists_only_the_public_services() {
    let c = one_node();
    c.wait_leader(Duration::from_secs(20)).await;
    let n = &c.nodes[0];
    let want: BTreeSet<String> = PUBLIC.iter().map(|s| s.to_string()).collect();
    assert_eq!(services_v1(n).await, want, "reflection v1");
    assert_eq!(services_v1alpha(n).await, want, "reflection v1alpha");

    // The Raft peer service is not on the API port, whatever the batch says...
    let batch = RaftBatch {
        cluster_id: "raft-sentinel".into(),
        from: 1,
        to: 1,
        msgs: Vec::new(),
        mac: Vec::new(),
    };
    let err = RaftPeerClient::new(support::plain_channel(&n.grpc_addr()).await)
        .send(batch.clone())
        .await
        .expect_err("the peer service must not answer on the API port");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
    // ...while the peer port does serve it.
    RaftPeerClient::new(support::plain_channel(&n.peer_addr()).await)
        .send(batch)
        .await
        .expect("the peer port serves the Raft peer service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_reflection_client_calls_get_master_by_name() {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/compat/.venv/bin/python");
    assert!(
        python.exists(),
        "grpcio is not installed: tests/compat/install.sh"
    );
    let c = one_node();
    c.wait_leader(Duration::from_secs(20)).await;
    // The configured master is committed just after the election: the client's lookup must
    // not race it.
    support::eventually(
        Duration::from_secs(10),
        "the configured master is applied",
        || async { support::get_master(&c.nodes[0], "mymaster").await?.master },
    )
    .await;
    let out = std::process::Command::new(&python)
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/compat/grpc_reflection_client.py"),
        )
        .args([&c.nodes[0].grpc_addr(), "mymaster"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reflection client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let services: BTreeSet<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(services, PUBLIC.into_iter().collect(), "{stdout}");
    let m = &v["reply"]["master"];
    assert_eq!(m["name"], "mymaster", "{stdout}");
    assert_eq!(m["host"], "127.0.0.1", "{stdout}");
    assert!(m["port"].as_u64().unwrap() > 0, "{stdout}");
}
