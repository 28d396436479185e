//! vars: declarative secrets for fleets of NixOS, nix-darwin and home-manager machines.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod env;
pub mod fs_util;
pub mod sandbox;
pub mod secret;

#[cfg(test)]
pub(crate) mod test_support;
