//! Compiles the .proto files with protox (pure Rust), so no system protoc is needed.

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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
