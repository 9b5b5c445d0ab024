//! Compiles the .proto files with protox (pure Rust), so no system protoc is needed.

/// Reply messages of the public API that `ctl --json` prints, with the messages they hold.
const PRINTED: &[&str] = &[
    "ClusterStatusReply",
    "Member",
    "ListMastersReply",
    "MasterAddr",
    "GetMasterReply",
    "MasterDetail",
    "ReplicaDetail",
    "Observation",
    "FailoverState",
    "ReconfReplica",
    "FailoverRecord",
    "MasterChange",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/raftsentinel/peer/v1/raft.proto",
        "proto/raftsentinel/v1/coordinator.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection on the API port describes the public API only, never the peer protocol.
    let api = protox::compile(["proto/raftsentinel/v1/coordinator.proto"], ["proto"])?;
    std::fs::write(
        out.join("api_descriptor.bin"),
        prost::Message::encode_to_vec(&api),
    )?;
    let mut build = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true);
    // `ctl --json` prints the replies as they are. Requests are left out on purpose: some carry
    // passwords (MonitorRequest.auth_pass), which must never become printable by accident.
    for m in PRINTED {
        build = build.message_attribute(
            format!(".raftsentinel.v1.{m}"),
            "#[derive(serde::Serialize)]",
        );
    }
    // Enums print by their lowercased name, as they always have; an absent master as the
    // default one.
    build = build
        .field_attribute(
            ".raftsentinel.v1.ClusterStatusReply.role",
            r#"#[serde(serialize_with = "crate::pb::json::role")]"#,
        )
        .field_attribute(
            ".raftsentinel.v1.MasterChange.kind",
            r#"#[serde(serialize_with = "crate::pb::json::change_kind")]"#,
        )
        .field_attribute(
            ".raftsentinel.v1.MasterDetail.master",
            r#"#[serde(serialize_with = "crate::pb::json::or_default")]"#,
        );
    build.compile_fds(fds)?;
    Ok(())
}
