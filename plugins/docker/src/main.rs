//! The standalone docker plugin binary (`drover plugin serve docker` serves the same driver).

fn main() {
    drover_plugin_sdk::main(drover_plugin_docker::Docker::default)
}
