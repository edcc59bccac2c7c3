fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "plugin/base.proto",
        "plugin/driver.proto",
        "plugin/go_plugin.proto",
        "cluster/raft.proto",
        "cluster/node.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    // Ordered maps: map fields iterate deterministically (see clippy.toml).
    tonic_prost_build::configure()
        .btree_map(".")
        .compile_protos(&protos, &["."])?;
    Ok(())
}
