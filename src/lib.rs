//! vars: declarative secrets for fleets of NixOS, nix-darwin and home-manager machines.
//!
//! The pipeline, module by module (DESIGN §1); each depends only on those above it:
//!
//! 1. [`spec`] — the YAML formats as written (`vars.yaml`, `generators/*.yaml`), strict serde
//!    types with source positions; [`diagnostic`] renders positioned errors.
//! 2. [`model`] — validated declarations: names checked, tags expanded, recipients parsed once
//!    ([`recipients::ParsedRecipients`]), generator instances resolved into machine / user /
//!    shared scopes ([`model::shipped`] supplies the built-in generators and `extends:`), and the one [`dag`] order.
//! 3. [`store`] — the `vars/` tree: [`store::layout`] names everything in it (the only place
//!    that spells `<file>.age`), [`store::Store`] does all its I/O beneath one directory handle
//!    that never follows a link ([`fs_util::Dir`]), atomic instance swaps, the lock, crash
//!    recovery, and [`store::Store::instances`], the one walk of the tree; [`meta`] and
//!    [`manifest`] are its bookkeeping files.
//! 4. [`plan`] — the state of every instance (missing, stale and why, secrets to re-encrypt),
//!    from `meta.json` alone, with regeneration spreading to dependents.
//! 5. [`sandbox`] — running a generator script under bubblewrap / sandbox-exec and verifying
//!    its outputs; [`prompt`] resolves prompt values (the CLI supplies the terminal);
//!    [`hardening`] keeps vars' own process from leaking (no core dumps, no inherited
//!    descriptors for any child).
//! 6. [`seal`] — every encryption, decryption and header read, whichever backend; below it
//!    [`crypto`] is the only user of the `age` crate; [`sops`] reads sops files in-process and
//!    spawns the `sops` program to write them; [`identity`] finds keys; [`vault`] is the
//!    store's vault key, the authenticator of its bookkeeping, and what this machine
//!    remembers about the store (its pins: the check that `keys/vault.pub` is genuine).
//! 7. [`generate`] plans ([`generate::plan`]) and applies a generate; [`rekey`] re-encrypts
//!    what is stale (its `Resealer` is shared with generate); [`check`] is CI's read-only
//!    verdict; [`set`] stores a value a person gives, [`import`] reads agenix, sops-nix and
//!    clan repositories into generators and a store, [`bootstrap`] hands a new machine its
//!    generated host key.
//!
//! 8. [`install`] decrypts a machine's or user's secrets at activation time into a RAM file
//!    system, switching generations atomically: a consumer of the store and of [`seal`] (host
//!    identities, no generation), reading with [`store::Store`] and writing with
//!    [`fs_util::Dir`].
//!
//! 9. [`scan`] proves that no tracked or staged file holds plaintext key material: it reads git
//!    (the only module that does), not the store, and judges store files with
//!    [`store::layout`] and [`meta`] alone.
//!
//! Where new parts go: another backend is one more arm in [`seal`] (as sops is) and one more
//! name in [`store::layout`]; another importer is one module under [`import`] that yields
//! generators and values; a command is a file in `src/cli/` calling one library function.
//!
//! Plaintext only ever lives in [`secret::SecretBytes`]; text from the repository is printed
//! through [`text::escape`].
// `deny`, not `forbid`: `hardening` is the one module allowed `unsafe` (system calls std and
// rustix have no safe wrapper for); it justifies each block.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bootstrap;
pub mod check;
pub mod crypto;
pub mod dag;
pub mod diagnostic;
pub mod env;
pub mod fs_util;
pub mod generate;
pub mod hardening;
pub mod identity;
pub mod import;
pub mod install;
pub mod keyring;
pub mod manifest;
pub mod meta;
pub mod model;
pub mod plan;
pub mod prompt;
pub mod recipients;
pub mod rekey;
pub mod sandbox;
pub mod scan;
pub mod seal;
pub mod secret;
pub mod set;
pub mod sops;
pub mod spec;
pub mod store;
pub mod text;
pub mod vault;
pub mod zerotier;

#[cfg(test)]
#[path = "../tests/common/tools.rs"]
pub(crate) mod test_support;
