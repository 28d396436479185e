//! Finding the admin's (or user's) identities in the documented order (DESIGN §4), and the
//! vault key: created on the first `generate`, unwrapped once per run with those identities.

use std::path::PathBuf;

use crate::crypto::{self, CryptoError, Identities, Recipient, VaultKey};
use crate::fs_util;
use crate::model::Config;
use crate::secret::SecretBytes;
use crate::store::{StagedFile, Store, StoreError};
use crate::{env, recipients::Principal, recipients::principal_recipients};

/// Errors finding identities or unwrapping the vault.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity file was found anywhere.
    #[error("no identity found; tried: {}", tried.join(", "))]
    NoneFound {
        /// Every place tried.
        tried: Vec<String>,
    },
    /// An identity file exists but cannot be used.
    #[error(transparent)]
    Bad(#[from] CryptoError),
    /// None of the identities decrypts `keys/vault.age`.
    #[error("none of your identities can decrypt {} (tried: {})", path.display(), tried.join(", "))]
    NotAnAdmin {
        /// vault.age.
        path: PathBuf,
        /// The identities tried.
        tried: Vec<String>,
    },
    /// Writing the vault failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where identities are looked for, in order: explicit `--identity` files, then
/// `$VARS_IDENTITY_FILE`, `~/.config/vars/identity.txt`, `~/.ssh/id_ed25519`.
/// The first source that exists wins (explicit files are all used).
pub fn candidate_paths(explicit: &[PathBuf]) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(env::IDENTITY_FILE).filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    let config_home = std::env::var_os(env::XDG_CONFIG_HOME)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(env::HOME).map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = config_home {
        out.push(c.join("vars/identity.txt"));
    }
    if let Some(h) = std::env::var_os(env::HOME) {
        out.push(PathBuf::from(h).join(".ssh/id_ed25519"));
    }
    out
}

/// Load identities: every explicit file (errors are fatal), or the first default that exists.
pub fn load(explicit: &[PathBuf]) -> Result<Identities, IdentityError> {
    let candidates = candidate_paths(explicit);
    let mut ids = Identities::default();
    if !explicit.is_empty() {
        for p in &candidates {
            ids.add_file(p)?;
        }
        return Ok(ids);
    }
    for p in &candidates {
        if p.is_file() {
            ids.add_file(p)?;
            return Ok(ids);
        }
    }
    let mut tried: Vec<String> = vec!["--identity".into()];
    tried.extend(candidates.iter().map(|p| p.display().to_string()));
    if std::env::var_os(env::IDENTITY_FILE).is_none() {
        tried.insert(1, format!("${}", env::IDENTITY_FILE));
    }
    Err(IdentityError::NoneFound { tried })
}

/// The vault recipient if the store has one.
pub fn vault_recipient(store: &Store) -> Result<Option<String>, IdentityError> {
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
pub fn create_vault(config: &Config, store: &Store) -> Result<VaultKey, IdentityError> {
    let vault = VaultKey::generate();
    write_vault(config, store, &vault)?;
    Ok(vault)
}

/// (Re)write `keys/` for `vault`, encrypted to the admins declared now.
pub fn write_vault(config: &Config, store: &Store, vault: &VaultKey) -> Result<(), IdentityError> {
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
pub fn unwrap_vault(store: &Store, ids: &Identities) -> Result<VaultKey, IdentityError> {
    let path = store.vault_age_path();
    let ct = fs_util::read(&path).map_err(CryptoError::from)?;
    let secret: SecretBytes = ids.decrypt(&ct).map_err(|_| IdentityError::NotAnAdmin {
        path: path.clone(),
        tried: ids.sources.clone(),
    })?;
    Ok(VaultKey::from_secret(&secret)?)
}
