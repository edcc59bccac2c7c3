fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "plugin/base.proto",
        "plugin/driver.proto",
        "plugin/secrets.proto",
        "plugin/go_plugin.proto",
        "cluster/raft.proto",
        "cluster/node.proto",
        "cluster/certificates.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // Ordered maps: map fields iterate deterministically (see clippy.toml).
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_protos(&protos, &["."])?;
    // The messages alone (no tonic services) of the contracts a plugin can also speak over the
    // unary ABI (Extism, native), for builds without the `grpc` feature (wasm32 plugins).
    let messages = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("messages");
    std::fs::create_dir_all(&messages)?;
    tonic_prost_build::configure()
        .btree_map(".")
        .build_client(false)
        .build_server(false)
        .out_dir(&messages)
        .compile_protos(&["plugin/base.proto", "plugin/secrets.proto"], &["."])?;
    Ok(())
}
