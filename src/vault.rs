//! The store's vault key (DESIGN §4): one X25519 identity every secret is also encrypted to.
//! Its public half is `keys/vault.pub`; its private half exists on disk only as
//! `keys/vault.age`, encrypted to every admin. Created by the first `generate`, unwrapped once
//! per run with an admin's identities.

use std::path::PathBuf;

use crate::crypto::{self, CryptoError, Identities, Recipient, VaultKey};
use crate::fs_util;
use crate::model::Config;
use crate::recipients::{Principal, principal_recipients};
use crate::secret::SecretBytes;
use crate::store::{StagedFile, Store, StoreError};

/// Errors creating, reading or unwrapping the vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// None of the identities decrypts `keys/vault.age`.
    #[error("none of your identities can decrypt {} (tried: {})", path.display(), tried.join(", "))]
    NotAnAdmin {
        /// vault.age.
        path: PathBuf,
        /// The identities tried.
        tried: Vec<String>,
    },
    /// The vault files are unreadable or malformed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Writing the vault failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The vault recipient if the store has one.
pub fn vault_recipient(store: &Store) -> Result<Option<String>, VaultError> {
    let path = store.vault_pub_path();
    if !path.exists() {
        return Ok(None);
    }
    let text = fs_util::read_to_string(&path).map_err(CryptoError::from)?;
    let r = Recipient::parse(text.trim()).map_err(|_| CryptoError::BadRecipient {
        reason: format!("{} does not hold an age recipient", path.display()),
    })?;
    Ok(Some(r.text().to_owned()))
}

/// Create the vault key: `keys/vault.pub` and `keys/vault.age` encrypted to every admin.
pub fn create_vault(config: &Config, store: &Store) -> Result<VaultKey, VaultError> {
    let vault = VaultKey::generate();
    write_vault(config, store, &vault)?;
    Ok(vault)
}

/// (Re)write `keys/` for `vault`, encrypted to the admins declared now.
pub fn write_vault(config: &Config, store: &Store, vault: &VaultKey) -> Result<(), VaultError> {
    let recipients: Vec<Recipient> = config
        .admins
        .iter()
        .flat_map(|a| principal_recipients(config, &Principal::User(a.clone()), ""))
        .map(Recipient::parse)
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Recipient> = recipients.iter().collect();
    let wrapped = crypto::encrypt(&vault.to_secret(), &refs, true)?;
    let mut public = vault.recipient();
    public.push('\n');
    store.swap_dir(
        &store.dir.join("keys"),
        &[
            StagedFile {
                name: "vault.age".into(),
                bytes: wrapped,
            },
            StagedFile {
                name: "vault.pub".into(),
                bytes: public.into_bytes(),
            },
        ],
    )?;
    Ok(())
}

/// Decrypt `keys/vault.age` with the caller's identities.
pub fn unwrap_vault(store: &Store, ids: &Identities) -> Result<VaultKey, VaultError> {
    let path = store.vault_age_path();
    let ct = fs_util::read(&path).map_err(CryptoError::from)?;
    let secret: SecretBytes = ids.decrypt(&ct).map_err(|_| VaultError::NotAnAdmin {
        path: path.clone(),
        tried: ids.sources.clone(),
    })?;
    Ok(VaultKey::from_secret(&secret)?)
}
