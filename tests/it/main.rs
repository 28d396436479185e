//! The one integration-test binary: end-to-end runs of the `vars` binary on the example fleets
//! in `testdata/fleets/`, bad input, and leak checks.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod bad_input;
mod bootstrap;
mod cli;
mod crash;
mod fleets;
mod generators;
mod identity;
mod import;
mod install;
mod leaks;
mod library;
mod nix;
mod plugin;
mod regenerate;
mod rekey;
mod rekey_props;
mod robustness;
mod sandbox;
mod scan;
mod scan_bulk;
mod scan_store;
mod schema;
mod set;
mod snapshots;
mod sops;
