//! The standalone raw_exec plugin binary (`drover plugin serve raw_exec` serves the same driver).

fn main() {
    drover_plugin_sdk::main(drover_plugin_raw_exec::RawExec::default)
}
