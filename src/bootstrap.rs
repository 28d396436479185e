//! `vars bootstrap --machine M DIR` (issue 11): what a new host needs before its first
//! activation, in the layout nixos-anywhere's `--extra-files DIR` copies to the new root.
//!
//! A machine whose `recipients` name a public file of one of its own instances
//! (`{ generated: ssh-host-ed25519/ssh_host_ed25519_key.pub }`) gets its host key from vars:
//! that instance's secrets are readable by the vault only (they cannot be encrypted to the key
//! they contain), everything else of the machine is encrypted to the generated key. An admin
//! then writes the key files under `DIR/etc/ssh/` (secret files 0600, public 0644) and hands
//! DIR to the installer; at first boot `vars install` finds the host key where sshd and the
//! NixOS module expect it. DIR is the admin's own path: it is created, its files are never
//! overwritten, and it holds a private key until the admin deletes it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::fs_util::{IoContext as _, IoError};
use crate::model::{Config, InstanceId, Scope};
use crate::seal::{Opener, SealError};
use crate::store::{Store, StoreError};
use crate::vault;

/// Errors writing a bootstrap directory. None carries key material.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The machine is not declared.
    #[error("unknown machine {0:?}")]
    UnknownMachine(String),
    /// The machine has no `{ generated: … }` recipient, so vars holds no host key for it.
    #[error("machine {0:?} has no generated recipient (recipients: [{{ generated: GEN/FILE }}])")]
    NothingGenerated(String),
    /// The instance holding the key is not generated yet.
    #[error("{0} is not generated yet: run vars generate --machine {1}")]
    NotGenerated(InstanceId, String),
    /// Opening the vault failed.
    #[error(transparent)]
    Open(#[from] vault::OpenError),
    /// Decrypting a key file failed.
    #[error("{instance}: {source}")]
    Seal {
        /// The instance.
        instance: InstanceId,
        /// The cause.
        source: SealError,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing DIR failed (an existing file is never overwritten).
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Where in DIR a host key goes: `etc/ssh/<file>`.
pub const KEY_DIR: &str = "etc/ssh";

/// Decrypt the instances holding `machine`'s generated recipients with the vault (opened from
/// the keyring cache or `identity_files`) and write their files under `dir/etc/ssh/`. Returns
/// the files written.
pub fn bootstrap(
    config: &Config,
    store: &Store,
    machine: &str,
    dir: &Path,
    identity_files: &[PathBuf],
) -> Result<Vec<PathBuf>, BootstrapError> {
    let m = config
        .machines
        .get(machine)
        .ok_or_else(|| BootstrapError::UnknownMachine(machine.to_owned()))?;
    if m.generated.is_empty() {
        return Err(BootstrapError::NothingGenerated(machine.to_owned()));
    }
    let mut instances: Vec<InstanceId> = m
        .generated
        .iter()
        .map(|g| InstanceId {
            scope: Scope::Machine(machine.to_owned()),
            generator: g.generator.clone(),
        })
        .collect();
    instances.dedup();
    // Everything is read and decrypted before anything is written.
    let key = vault::open(store, identity_files)?;
    let opener = Opener::vault(&key);
    let mut files = Vec::new();
    for id in &instances {
        if store.read_meta(id)?.is_none() {
            return Err(BootstrapError::NotGenerated(id.clone(), machine.to_owned()));
        }
        for (name, def) in &config.generator(id).files {
            let raw = store
                .read_file(id, name, def.secret)?
                .ok_or_else(|| BootstrapError::NotGenerated(id.clone(), machine.to_owned()))?;
            let bytes = if def.secret {
                opener
                    .open_at(&raw, &[&format!("{id}/{name}")])
                    .map_err(|source| BootstrapError::Seal {
                        instance: id.clone(),
                        source,
                    })?
            } else {
                crate::secret::SecretBytes::new(raw)
            };
            files.push((name.clone(), def.secret, bytes));
        }
    }
    let keys = dir.join(KEY_DIR);
    crate::fs_util::create_dir_all(&keys)?;
    let mut written = Vec::new();
    for (name, secret, bytes) in files {
        let path = keys.join(&name);
        let mode = if secret { 0o600 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at("create", &path)?;
        f.write_all(bytes.expose()).at("write", &path)?;
        f.sync_all().at("sync", &path)?;
        written.push(path);
    }
    Ok(written)
}
