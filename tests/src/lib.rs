//! End-to-end tests of the drover binary.
