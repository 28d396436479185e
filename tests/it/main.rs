//! The one integration-test binary: end-to-end runs of the `vars` binary on the example fleets
//! in `testdata/fleets/`, bad input, and leak checks.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod cli;
mod crash;
mod fleets;
mod identity;
mod import;
mod leaks;
mod rekey;
mod rekey_props;
mod robustness;
mod schema;
mod set;
mod sops;
