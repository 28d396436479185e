//! vars: declarative secrets for fleets of NixOS, nix-darwin and home-manager machines.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod env;
pub mod fs_util;
pub mod secret;
pub mod crypto;
pub mod dag;
pub mod diagnostic;
pub mod meta;
pub mod model;
pub mod recipients;
pub mod shipped;
pub mod spec;
pub mod store;
pub mod plan;
pub mod identity;
pub mod prompt;
pub mod manifest;
pub mod check;
//pub mod generate;
