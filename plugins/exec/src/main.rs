//! The standalone exec plugin binary (`drover plugin serve exec` serves the same driver).

fn main() {
    drover_plugin_sdk::main(drover_plugin_exec::Exec::default)
}
