//! The `TaskDriver`: the plugin's entry point.

/// The docker driver.
#[derive(Default)]
pub struct Docker {}
