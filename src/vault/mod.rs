//! The store's vault key (DESIGN §4): one X25519 identity every secret is also encrypted to.
//! Its public half is `keys/vault.pub`; its private half exists on disk only as
//! `keys/vault.age`, encrypted to every admin. Created by the first `generate`, unwrapped once
//! per run with an admin's identities.
//!
//! `keys/vault.pub` is opaque to a reviewer, so it is never trusted on its own: whenever the
//! vault is unwrapped its recipient must equal `vault.pub`, and a command that encrypts without
//! unwrapping (a user generating their own secrets) compares `vault.pub` with the recipient
//! this machine last saw for this store, kept outside the repository ([`check_pin`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::crypto::{CryptoError, Identities, Recipient, VaultKey};
use crate::meta;
use crate::model::Config;
use crate::recipients::{Principal, principal_recipients};
use crate::secret::SecretBytes;
use crate::store::{KeyFile, StagedFile, Store, StoreError};

mod pins;

use pins::record_pins;
pub use pins::{check_known, check_pin, record_known, record_pin};

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
    /// `keys/vault.pub` (or `next.pub`) is not the public half of the key in `vault.age`.
    #[error("{} does not match the vault key in {}: the store was tampered with (vault.pub is {found}, the key in vault.age is {unwrapped})", public.display(), private.display())]
    Mismatch {
        /// The public file.
        public: PathBuf,
        /// The encrypted key file.
        private: PathBuf,
        /// What the public file says.
        found: String,
        /// The recipient of the unwrapped key.
        unwrapped: String,
    },
    /// `keys/vault.pub` changed since this machine last used the store, and nothing proved the
    /// new one (DESIGN §4).
    #[error("{} changed since this machine last used this store: it was {recorded}, it is now {found}", path.display())]
    Changed {
        /// vault.pub.
        path: PathBuf,
        /// The recipient recorded outside the repository.
        recorded: String,
        /// The recipient in the store now.
        found: String,
    },
    /// `keys/next.*` exist but `keys/vault.json` does not prove the current vault wrote them.
    #[error("{} is not proven by the vault key: these rotation files were not written by this store's vault (planted, or by a vars before 0.2)", path.display())]
    UnprovenRotation {
        /// next.pub.
        path: PathBuf,
    },
    /// `keys/vault.json` cannot be verified with the vault key, so who `vault.age` is wrapped
    /// to is unknown: only a rotation makes the store safe again.
    #[error("{} cannot be verified with the vault key (missing, written by a vars before 0.2, or tampered with): which admins hold the vault is unknown", path.display())]
    UnverifiedRecord {
        /// vault.json.
        path: PathBuf,
    },
    /// The vault files are unreadable or malformed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// Reading or writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the store says about its vault, read once per command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VaultState {
    /// `keys/vault.pub`, when the store has a vault.
    pub recipient: Option<String>,
    /// `keys/next.pub`, while a rotation is under way.
    pub next: Option<String>,
}

/// Read `keys/vault.pub` and `keys/next.pub`.
pub fn state(store: &Store) -> Result<VaultState, VaultError> {
    Ok(VaultState {
        recipient: read_pub(store, KeyFile::VaultPub)?,
        next: read_pub(store, KeyFile::NextPub)?,
    })
}

/// The vault recipient if the store has one.
pub fn vault_recipient(store: &Store) -> Result<Option<String>, VaultError> {
    read_pub(store, KeyFile::VaultPub)
}

/// A vault key being rotated in: `keys/next.pub` exists while a rotation is under way.
pub fn next_recipient(store: &Store) -> Result<Option<String>, VaultError> {
    read_pub(store, KeyFile::NextPub)
}

fn read_pub(store: &Store, key: KeyFile) -> Result<Option<String>, VaultError> {
    let Some(bytes) = store.read_key(key)? else {
        return Ok(None);
    };
    let path = store.key_path(key);
    let bad = || CryptoError::BadRecipient {
        reason: format!("{} does not hold an age recipient", path.display()),
    };
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let r = Recipient::parse(text.trim()).map_err(|_| bad())?;
    // An X25519 key only: a plugin recipient here would make vars run that plugin.
    if !r.is_x25519() {
        return Err(bad().into());
    }
    Ok(Some(r.text().to_owned()))
}

/// Create the vault key: `keys/vault.pub` and `keys/vault.age` encrypted to every admin.
pub fn create_vault(config: &Config, store: &Store) -> Result<VaultKey, VaultError> {
    let vault = VaultKey::generate();
    write_keys(config, store, &vault, None)?;
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
    /// The vault key's authenticator ([`VaultKey::authenticate`]) of the admins, `vault.pub`
    /// and `next.pub`: proof, to whoever holds the vault, that this record and a rotation's
    /// next key were written by the vault's holder, not planted (anyone can encrypt a key to
    /// the admins' public recipients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The label of the vault record's authenticator.
const RECORD_LABEL: &str = "keys/vault.json";

impl VaultRecord {
    /// The bytes the authenticator covers.
    fn authenticated(&self, vault: &str, next: Option<&str>) -> Vec<u8> {
        meta::to_json(&serde_json::json!({
            "admins": self.admins,
            "format": self.format,
            "next": next,
            "vault": vault,
        }))
    }
}

/// What an admin's command learns about `keys/vault.json` once it holds the vault key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCheck {
    /// Written by the vault's holder, for the `next.pub` (if any) the store holds now.
    Verified,
    /// Missing, written before records were authenticated, or forged.
    Unverified,
}

/// Check `keys/vault.json` (and so `keys/next.pub`) with the vault key now in `vault.pub`.
pub fn verify_record(store: &Store, vault: &VaultKey) -> Result<RecordCheck, VaultError> {
    let Some(record) = recorded_admins(store)? else {
        return Ok(RecordCheck::Unverified);
    };
    let next = next_recipient(store)?;
    let data = record.authenticated(&vault.recipient(), next.as_deref());
    Ok(match &record.mac {
        Some(tag) if vault.verify(RECORD_LABEL, &data, tag) => RecordCheck::Verified,
        _ => RecordCheck::Unverified,
    })
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
    let Some(bytes) = store.read_key(KeyFile::VaultJson)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        StoreError::BadMeta {
            path: store.key_path(KeyFile::VaultJson),
            reason: e.to_string(),
        }
        .into()
    })
}

/// Write `keys/` for `vault`, encrypted to the admins declared now. With `next`, the
/// directory also holds the vault key being rotated in (`next.age`, `next.pub`), so an
/// interrupted rotation can always be finished: every secret decrypts with one of the two.
/// The recipient written is recorded as this machine's known vault of the store.
pub fn write_keys(
    config: &Config,
    store: &Store,
    vault: &VaultKey,
    next: Option<&VaultKey>,
) -> Result<(), VaultError> {
    let admins = declared_admins(config);
    let recipients: Vec<&Recipient> = admins
        .values()
        .flatten()
        .map(|r| {
            config
                .recipients
                .get(r)
                .ok_or_else(|| CryptoError::BadRecipient {
                    reason: "an admin recipient was not parsed with the declarations".into(),
                })
        })
        .collect::<Result<_, _>>()?;
    let mut record = VaultRecord {
        admins,
        format: meta::META_FORMAT,
        mac: None,
    };
    let next_pub = next.map(VaultKey::recipient);
    record.mac = Some(vault.authenticate(
        RECORD_LABEL,
        &record.authenticated(&vault.recipient(), next_pub.as_deref()),
    ));
    let wrap = |key: &VaultKey| crate::crypto::encrypt(&key.to_secret(), &recipients, true);
    let mut files = vec![
        StagedFile {
            name: KeyFile::VaultAge.name().into(),
            bytes: wrap(vault)?,
        },
        StagedFile {
            name: KeyFile::VaultJson.name().into(),
            bytes: meta::to_json(&record),
        },
        StagedFile {
            name: KeyFile::VaultPub.name().into(),
            bytes: format!("{}\n", vault.recipient()).into_bytes(),
        },
    ];
    if let Some(next) = next {
        files.push(StagedFile {
            name: KeyFile::NextAge.name().into(),
            bytes: wrap(next)?,
        });
        files.push(StagedFile {
            name: KeyFile::NextPub.name().into(),
            bytes: format!("{}\n", next.recipient()).into_bytes(),
        });
    }
    // This command made (or rotated to) these keys: pinned before keys/ changes, so that no
    // crash can leave this machine seeing a vault it did not pin.
    match next {
        Some(n) => record_pins(store, &[&vault.recipient(), &n.recipient()]),
        None => {
            let previous = read_pub(store, KeyFile::VaultPub)?;
            match previous.as_deref() {
                Some(p) if p != vault.recipient() => {
                    record_pins(store, &[p, &vault.recipient()]);
                }
                _ => record_pin(store, &vault.recipient()),
            }
        }
    }
    store.swap_dir(Path::new(crate::store::layout::KEYS_DIR), &files)?;
    record_pin(store, &vault.recipient());
    Ok(())
}

/// Decrypt `keys/next.age` (an interrupted rotation's new vault key), checked against
/// `keys/next.pub` and proven by `keys/vault.json`'s authenticator under the current vault key
/// `vault`: a `next.*` planted by someone without the vault is refused, never rotated to.
pub fn unwrap_next(
    store: &Store,
    vault: &VaultKey,
    ids: &Identities,
) -> Result<VaultKey, VaultError> {
    if verify_record(store, vault)? != RecordCheck::Verified {
        return Err(VaultError::UnprovenRotation {
            path: store.key_path(KeyFile::NextPub),
        });
    }
    let public = read_pub(store, KeyFile::NextPub)?.unwrap_or_default();
    unwrap_at(store, KeyFile::NextAge, (KeyFile::NextPub, &public), ids)
}

/// Decrypt `keys/vault.age` with the caller's identities, checked against `keys/vault.pub`
/// (a mismatch means the store was tampered with), and remember its recipient as this
/// machine's known vault of the store.
pub fn unwrap_vault(store: &Store, ids: &Identities) -> Result<VaultKey, VaultError> {
    let public = read_pub(store, KeyFile::VaultPub)?.unwrap_or_default();
    unwrap_vault_for(store, &public, ids)
}

/// [`unwrap_vault`] when `keys/vault.pub` was read already (`recipient`).
fn unwrap_vault_for(
    store: &Store,
    recipient: &str,
    ids: &Identities,
) -> Result<VaultKey, VaultError> {
    let key = unwrap_at(
        store,
        KeyFile::VaultAge,
        (KeyFile::VaultPub, recipient),
        ids,
    )?;
    // vault.age matching vault.pub proves nothing on its own (anyone can encrypt a key of
    // their own to the admins' public recipients): the vault must also be the one this machine
    // knows, or be confirmed (`vars trust`).
    check_pin(store, &key.recipient(), None)?;
    Ok(key)
}

/// Decrypt `private` and check that its recipient is `public` (the file and what it said).
fn unwrap_at(
    store: &Store,
    private: KeyFile,
    (public, found): (KeyFile, &str),
    ids: &Identities,
) -> Result<VaultKey, VaultError> {
    let path = store.key_path(private);
    let ct = store
        .read_key(private)?
        .ok_or_else(|| StoreError::BadMeta {
            path: path.clone(),
            reason: "it is missing".into(),
        })?;
    let secret: SecretBytes = ids.decrypt(&ct).map_err(|_| VaultError::NotAnAdmin {
        path: path.clone(),
        tried: ids.sources.clone(),
    })?;
    let key = VaultKey::from_secret(&secret)?;
    if found != key.recipient() {
        return Err(VaultError::Mismatch {
            public: store.key_path(public),
            private: path,
            found: found.to_owned(),
            unwrapped: key.recipient(),
        });
    }
    Ok(key)
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
    let recipient = vault_recipient(store)?.ok_or_else(|| OpenError::NoVault {
        path: store.vault_pub_path(),
    })?;
    open_for(store, &recipient, identity_files)
}

/// [`open`] when `keys/vault.pub` was read already (`recipient`): the cache is keyed by it and
/// the unwrapped key checked against it.
pub fn open_for(
    store: &Store,
    recipient: &str,
    identity_files: &[PathBuf],
) -> Result<VaultKey, OpenError> {
    if let Some(v) = cached_for(recipient).ok().flatten() {
        return Ok(v);
    }
    let ids = crate::identity::load(identity_files)?;
    Ok(unwrap_vault_for(store, recipient, &ids)?)
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
            (
                unwrap_vault_for(store, &recipient, &ids)?,
                Unlocked::Identities,
            )
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
