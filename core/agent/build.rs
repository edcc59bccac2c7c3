//! Links `drover` as a position-dependent executable. A PIE `drover` carries ~10,000 dynamic
//! relocations that every process (the agent, each plugin it serves, each task shim) applies
//! at start, dirtying private copies of its relocated read-only data and costing startup
//! time; a non-PIE one has ~150. (Go links its binaries this way by default too.)
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
