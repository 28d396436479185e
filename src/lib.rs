//! vars: declarative secrets for fleets of NixOS, nix-darwin and home-manager machines.
//!
//! The pipeline, module by module (DESIGN §1):
//!
//! 1. [`spec`] — the YAML formats as written (`vars.yaml`, `generators/*.yaml`), strict serde
//!    types with source positions; [`diagnostic`] renders positioned errors.
//! 2. [`model`] — validated declarations: names checked, tags expanded, recipients parsed,
//!    generator instances resolved into machine / user / shared scopes ([`shipped`] supplies the
//!    built-in generators).
//! 3. [`dag`] — dependency order between instances, cycles with their path.
//! 4. [`plan`] — what is missing, stale or mis-keyed, as plain data, from `meta.json` alone.
//! 5. [`sandbox`] — running a generator script under bubblewrap / sandbox-exec and verifying
//!    its outputs; [`prompt`] collects prompt values.
//! 6. [`crypto`] — the only user of the `age` crate; [`recipients`] says who reads what;
//!    [`identity`] finds the admin's keys; [`vault`] is the store's vault key.
//! 7. [`store`] — the `vars/` tree, atomic instance swaps, lock, crash recovery; [`meta`] and
//!    [`manifest`] are its bookkeeping files.
//! 8. [`generate`] applies a plan; [`check`] is CI's read-only verdict.
//!
//! Plaintext only ever lives in [`secret::SecretBytes`]; text from the repository is printed
//! through [`text::escape`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod check;
pub mod crypto;
pub mod dag;
pub mod diagnostic;
pub mod env;
pub mod fs_util;
pub mod generate;
pub mod identity;
pub mod import;
pub mod keyring;
pub mod manifest;
pub mod meta;
pub mod model;
pub mod plan;
pub mod prompt;
pub mod recipients;
pub mod rekey;
pub mod sandbox;
pub mod seal;
pub mod secret;
pub mod set;
pub mod shipped;
pub mod sops;
pub mod spec;
pub mod store;
pub mod text;
pub mod vault;

#[cfg(test)]
pub(crate) mod test_support;
