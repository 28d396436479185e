//! The store's vault key (DESIGN §4): one X25519 identity every secret is also encrypted to.
//! Its public half is `keys/vault.pub`; its private half exists on disk only as
//! `keys/vault.age`, encrypted to every admin. Created by the first `generate`, unwrapped once
//! per run with an admin's identities.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::crypto::{self, CryptoError, Identities, Recipient, VaultKey};
use crate::fs_util;
use crate::meta;
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

/// `keys/vault.json`: which admins (and which of their recipients) `vault.age` is wrapped
/// to, so `check` and `rekey` can tell an added or removed admin without decrypting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VaultRecord {
    /// Admin name → the recipients vault.age is encrypted to for them.
    pub admins: BTreeMap<String, Vec<String>>,
    /// Format version.
    pub format: u32,
}

/// The admins and recipients declared now.
pub fn declared_admins(config: &Config) -> BTreeMap<String, Vec<String>> {
    config
        .admins
        .iter()
        .map(|a| {
            let mut r: Vec<String> = principal_recipients(config, &Principal::User(a.clone()), "")
                .into_iter()
                .map(str::to_owned)
                .collect();
            r.sort();
            r.dedup();
            (a.clone(), r)
        })
        .collect()
}

/// The admins `vault.age` was last wrapped to; `None` if the store has no `vault.json`.
pub fn recorded_admins(store: &Store) -> Result<Option<VaultRecord>, VaultError> {
    let path = store.dir.join("keys/vault.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::BadMeta {
                path,
                reason: e.to_string(),
            }
            .into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io(fs_util::IoError {
            action: "read",
            path,
            source,
        })
        .into()),
    }
}

/// A vault key being rotated in: `keys/next.pub` exists while a rotation is under way.
pub fn next_recipient(store: &Store) -> Result<Option<String>, VaultError> {
    let path = store.dir.join("keys/next.pub");
    if !path.exists() {
        return Ok(None);
    }
    let text = fs_util::read_to_string(&path).map_err(CryptoError::from)?;
    Ok(Some(text.trim().to_owned()))
}

/// (Re)write `keys/` for `vault`, encrypted to the admins declared now. With `next`, the
/// directory also holds the vault key being rotated in (`next.age`, `next.pub`), so an
/// interrupted rotation can always be finished: every secret decrypts with one of the two.
pub fn write_vault(config: &Config, store: &Store, vault: &VaultKey) -> Result<(), VaultError> {
    write_keys(config, store, vault, None)
}

/// Write `keys/` with the current vault and, during a rotation, the next one.
pub fn write_keys(
    config: &Config,
    store: &Store,
    vault: &VaultKey,
    next: Option<&VaultKey>,
) -> Result<(), VaultError> {
    let admins = declared_admins(config);
    let recipients: Vec<Recipient> = admins
        .values()
        .flatten()
        .map(|r| Recipient::parse(r))
        .collect::<Result<_, _>>()?;
    let refs: Vec<&Recipient> = recipients.iter().collect();
    let record = VaultRecord {
        admins,
        format: meta::META_FORMAT,
    };
    let mut files = vec![
        StagedFile {
            name: "vault.age".into(),
            bytes: crypto::encrypt(&vault.to_secret(), &refs, true)?,
        },
        StagedFile {
            name: "vault.json".into(),
            bytes: meta::to_json(&record),
        },
        StagedFile {
            name: "vault.pub".into(),
            bytes: format!("{}\n", vault.recipient()).into_bytes(),
        },
    ];
    if let Some(next) = next {
        files.push(StagedFile {
            name: "next.age".into(),
            bytes: crypto::encrypt(&next.to_secret(), &refs, true)?,
        });
        files.push(StagedFile {
            name: "next.pub".into(),
            bytes: format!("{}\n", next.recipient()).into_bytes(),
        });
    }
    store.swap_dir(&store.dir.join("keys"), &files)?;
    Ok(())
}

/// Decrypt `keys/next.age` (an interrupted rotation's new vault key).
pub fn unwrap_next(store: &Store, ids: &Identities) -> Result<VaultKey, VaultError> {
    unwrap_at(&store.dir.join("keys/next.age"), ids)
}

/// Decrypt `keys/vault.age` with the caller's identities.
pub fn unwrap_vault(store: &Store, ids: &Identities) -> Result<VaultKey, VaultError> {
    unwrap_at(&store.vault_age_path(), ids)
}

fn unwrap_at(path: &std::path::Path, ids: &Identities) -> Result<VaultKey, VaultError> {
    let path = path.to_path_buf();
    let ct = fs_util::read(&path).map_err(CryptoError::from)?;
    let secret: SecretBytes = ids.decrypt(&ct).map_err(|_| VaultError::NotAnAdmin {
        path: path.clone(),
        tried: ids.sources.clone(),
    })?;
    Ok(VaultKey::from_secret(&secret)?)
}

/// Errors opening the vault for a command ([`open`], [`unlock`], [`lock`]).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store has no `keys/vault.pub` yet: nothing was generated.
    #[error("{} does not exist: this store has no vault yet", path.display())]
    NoVault {
        /// The missing `keys/vault.pub`.
        path: PathBuf,
    },
    /// No usable identity.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The identities do not unwrap the vault, or the vault files are damaged.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The OS keyring holding the cached vault key is not usable (only [`unlock`] and
    /// [`lock`] report this; [`open`] falls back to the identities).
    #[error(transparent)]
    Keyring(#[from] crate::keyring::KeyringError),
}

/// Where [`unlock`] got the vault key from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlocked {
    /// Unwrapped from `keys/vault.age` with the caller's identities.
    Identities,
    /// It was already cached; the cache was renewed.
    Cache,
}

/// The vault key of `store` as cached by `vars unlock`, if it is cached, unexpired and
/// matches `keys/vault.pub`. A keyring that is not usable counts as "not cached".
pub fn cached(store: &Store) -> Result<Option<VaultKey>, VaultError> {
    let Some(recipient) = vault_recipient(store)? else {
        return Ok(None);
    };
    Ok(cached_for(&recipient).ok().flatten())
}

fn cached_for(recipient: &str) -> Result<Option<VaultKey>, crate::keyring::KeyringError> {
    let Some(secret) = crate::keyring::cached_vault(recipient)? else {
        return Ok(None);
    };
    // The cache is keyed by the recipient; check the key really is that recipient's anyway,
    // so a stale or tampered entry is ignored rather than used.
    Ok(VaultKey::from_secret(&secret)
        .ok()
        .filter(|v| v.recipient() == recipient))
}

/// The vault key of `store` for a command that needs it: the cached one from `vars unlock`
/// when present and matching, else unwrapped from `keys/vault.age` with the identities that
/// [`crate::identity::load`] finds (`identity_files` are the `--identity` arguments).
pub fn open(store: &Store, identity_files: &[PathBuf]) -> Result<VaultKey, OpenError> {
    if let Some(v) = cached(store)? {
        return Ok(v);
    }
    let ids = crate::identity::load(identity_files)?;
    Ok(unwrap_vault(store, &ids)?)
}

/// `vars unlock`: unwrap the vault once and cache its key in the OS keyring for `ttl`, keyed
/// by `keys/vault.pub`. A key already cached is renewed without asking for identities. A
/// keyring that is not usable is reported before any identity is loaded, and nothing changes.
pub fn unlock(
    store: &Store,
    identity_files: &[PathBuf],
    ttl: std::time::Duration,
) -> Result<Unlocked, OpenError> {
    let recipient = vault_recipient(store)?.ok_or_else(|| OpenError::NoVault {
        path: store.vault_pub_path(),
    })?;
    let (vault, from) = match cached_for(&recipient)? {
        Some(v) => (v, Unlocked::Cache),
        None => {
            let ids = crate::identity::load(identity_files)?;
            (unwrap_vault(store, &ids)?, Unlocked::Identities)
        }
    };
    crate::keyring::cache_vault(&recipient, &vault.to_secret(), ttl)?;
    Ok(from)
}

/// `vars lock`: drop the cached vault key of `store`; `Ok(false)` if none was cached (or the
/// store has no vault at all).
pub fn lock(store: &Store) -> Result<bool, OpenError> {
    let Some(recipient) = vault_recipient(store)? else {
        return Ok(false);
    };
    Ok(crate::keyring::drop_vault(&recipient)?)
}
