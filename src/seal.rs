//! Every encryption, decryption and header inspection of a stored secret goes through here,
//! whichever backend writes the store (DESIGN §11): `generate`, `rekey`, `set`, the
//! importers, `get`, dependency inputs, `check`'s header reads and `vars install`. The age
//! backend encrypts in-process ([`crate::crypto`]); the sops backend has the `sops` program
//! write sops' binary format ([`crate::sops`]). Both are *read* in-process, told apart by
//! content (an age header, or sops' JSON), so a store half-way through a conversion between
//! backends (`vars rekey --backend`) reads everywhere. The vault's own key files stay age.
//!
//! [`Reader`] is how a person reads a secret: with the vault unlocked by `vars unlock`, else
//! with their own identity (they may be a recipient), else through the vault unwrapped with it
//! (they may be an admin), each tried once per command.

use std::path::PathBuf;

use crate::crypto::{self, CryptoError, Identities, Recipient, Stanza, VaultKey};
use crate::model::Config;
use crate::secret::SecretBytes;
use crate::sops::{self, SopsError, file::FileError};
use crate::spec::Backend;
use crate::store::Store;

/// Errors sealing and opening secrets. None carries plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A recipient could not be used (malformed, low-order, or a plugin failed).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A recipient a file must be encrypted to is not among the parsed ones (a bug: the model
    /// parses every declared recipient).
    #[error("recipient {recipient} was not parsed with the declarations")]
    UnknownRecipient {
        /// The first characters of it.
        recipient: String,
    },
    /// The vault could not be opened to read a secret.
    #[error(transparent)]
    Vault(Box<crate::vault::OpenError>),
    /// A secret's authenticated header names another place in the store, or none.
    #[error("{location} was written for {}: it was copied here from elsewhere in the store (or by a vars before 0.2); it is not read", found.as_deref().unwrap_or("no place"))]
    Moved {
        /// Where it was read.
        location: String,
        /// Where its header says it belongs.
        found: Option<String>,
    },
    /// The sops program is missing or failed.
    #[error(transparent)]
    Sops(Box<SopsError>),
    /// A sops file could not be read.
    #[error(transparent)]
    SopsFile(Box<FileError>),
}

// Boxed: an error is passed up through every command's result, which stays small.
impl From<SopsError> for SealError {
    fn from(e: SopsError) -> Self {
        SealError::Sops(Box::new(e))
    }
}

impl From<FileError> for SealError {
    fn from(e: FileError) -> Self {
        SealError::SopsFile(Box::new(e))
    }
}

/// Encrypts secrets to the recipients DESIGN §4 computes, the vault's stanza first.
pub struct Sealer<'a> {
    config: &'a Config,
    vault: Recipient,
    /// The sops program, for the sops backend: found (or reported missing) before anything
    /// runs.
    sops: Option<&'static sops::Program>,
}

impl<'a> Sealer<'a> {
    /// A sealer for the fleet of `config` whose vault recipient is `vault`. With the sops
    /// backend, a missing or too old `sops` is an error here, before anything is generated.
    pub fn new(config: &'a Config, vault: &str) -> Result<Self, SealError> {
        let sops = match config.backend {
            Backend::Age => None,
            Backend::Sops => Some(sops::program()?),
        };
        Ok(Sealer {
            config,
            vault: Recipient::parse(vault)?,
            sops,
        })
    }

    /// The vault recipient every secret is also encrypted to.
    pub fn vault(&self) -> &str {
        self.vault.text()
    }

    /// Encrypt `plaintext` to `recipients` (from [`crate::recipients::recipients_for`], so
    /// sorted and containing the vault), for the store path `location`
    /// (`machines/m/gen/file`), which age files carry in their authenticated header
    /// ([`Opener::open_at`] checks it).
    pub fn seal(
        &self,
        plaintext: &SecretBytes,
        recipients: &[String],
        location: &str,
    ) -> Result<Vec<u8>, SealError> {
        // The vault's stanza goes first: an admin (or rekey) unwrapping with the vault key
        // then finds its stanza on the first try instead of testing every host's.
        let mut refs: Vec<&Recipient> = Vec::with_capacity(recipients.len());
        refs.push(&self.vault);
        for r in recipients
            .iter()
            .filter(|r| r.as_str() != self.vault.text())
        {
            let parsed =
                self.config
                    .recipients
                    .get(r)
                    .ok_or_else(|| SealError::UnknownRecipient {
                        recipient: r.chars().take(24).collect(),
                    })?;
            refs.push(parsed);
        }
        match self.sops {
            None => Ok(crypto::encrypt_at(
                plaintext,
                &refs,
                self.config.armor,
                Some(location),
            )?),
            Some(program) => {
                let texts: Vec<&str> = refs.iter().map(|r| r.text()).collect();
                Ok(program.encrypt(plaintext, &texts)?)
            }
        }
    }
}

/// Decrypts stored secrets with a set of identities (the vault key, host keys, an admin's).
pub struct Opener {
    ids: Identities,
}

impl Opener {
    /// An opener for the identities given.
    pub fn new(ids: Identities) -> Self {
        Opener { ids }
    }

    /// An opener holding the unwrapped vault key.
    pub fn vault(vault: &VaultKey) -> Self {
        let mut ids = Identities::default();
        ids.add_vault(vault);
        Opener { ids }
    }

    /// Where the identities came from, for messages.
    pub fn sources(&self) -> &[String] {
        &self.ids.sources
    }

    /// Decrypt a stored secret of either backend (told apart by content), without asking
    /// where it belongs: for key files, not for secrets of instances ([`Opener::open_at`]).
    pub fn open(&self, ciphertext: &[u8]) -> Result<SecretBytes, SealError> {
        if sops::file::looks_like_sops(ciphertext) {
            return Ok(sops::file::open_binary(ciphertext, &self.ids)?);
        }
        Ok(self.ids.decrypt(ciphertext)?)
    }

    /// Decrypt the secret stored at `location` (`machines/m/gen/file`): an age file must name
    /// one of `accepted` in its header (written by [`Sealer::seal`], covered by the header MAC
    /// that decryption checks), so a ciphertext copied from another instance or file is
    /// refused instead of being re-encrypted to new readers or installed as someone else's.
    /// sops files carry no such binding (their format has no authenticated place for it).
    pub fn open_at(&self, ciphertext: &[u8], accepted: &[&str]) -> Result<SecretBytes, SealError> {
        if sops::file::looks_like_sops(ciphertext) {
            return Ok(sops::file::open_binary(ciphertext, &self.ids)?);
        }
        let plain = self.ids.decrypt(ciphertext)?;
        let found = crypto::header_location(ciphertext)?;
        match found {
            Some(f) if accepted.iter().any(|a| *a == f) => Ok(plain),
            found => Err(SealError::Moved {
                location: accepted
                    .first()
                    .map(|a| (*a).to_owned())
                    .unwrap_or_default(),
                found: found.map(|f| crate::text::escape(&f).into_owned()),
            }),
        }
    }
}

/// The recipient stanzas of a secret stored by `backend`, read without decrypting (for
/// `check`): an age header's, or those inside each `sops.age` entry of a sops file (plus one
/// per master key of another kind, so every key that can read the file is counted). Bytes
/// that are not the backend's format are an error.
pub fn stanzas(backend: Backend, ciphertext: &[u8]) -> Result<Vec<Stanza>, SealError> {
    match backend {
        Backend::Age => Ok(crypto::header_stanzas(ciphertext)?),
        Backend::Sops => Ok(sops::file::SopsFile::parse_binary(ciphertext)?.stanzas()?),
    }
}

/// How a person reads secrets of a store (`vars get`, stored prompt values): the cached vault,
/// their own identity, or the vault unwrapped with it; each is set up at most once.
pub struct Reader<'a> {
    store: &'a Store,
    identity_files: Vec<PathBuf>,
    own: Option<Opener>,
    vault: Option<Opener>,
    tried_cache: bool,
}

impl<'a> Reader<'a> {
    /// A reader for `store` that loads identities from `identity_files` (the `--identity`
    /// arguments) or the default places when it first needs them.
    pub fn new(store: &'a Store, identity_files: &[PathBuf]) -> Self {
        Reader {
            store,
            identity_files: identity_files.to_vec(),
            own: None,
            vault: None,
            tried_cache: false,
        }
    }

    /// A reader that decrypts with the vault key already unwrapped.
    pub fn with_vault(store: &'a Store, vault: &VaultKey) -> Self {
        Reader {
            store,
            identity_files: Vec::new(),
            own: None,
            vault: Some(Opener::vault(vault)),
            tried_cache: true,
        }
    }

    /// Decrypt `ciphertext`, the secret stored at `location` (`machines/m/gen/file`).
    pub fn open(&mut self, ciphertext: &[u8], location: &str) -> Result<SecretBytes, SealError> {
        if !self.tried_cache {
            self.tried_cache = true;
            if let Ok(Some(v)) = crate::vault::cached(self.store) {
                self.vault = Some(Opener::vault(&v));
            }
        }
        if let Some(vault) = &self.vault {
            return vault.open_at(ciphertext, &[location]);
        }
        if self.own.is_none() {
            let ids = crate::identity::load(&self.identity_files)
                .map_err(|e| SealError::Vault(Box::new(e.into())))?;
            self.own = Some(Opener::new(ids));
        }
        let own = self.own.as_ref().expect("loaded above");
        match own.open_at(ciphertext, &[location]) {
            Ok(p) => Ok(p),
            // Decrypted, but written for another place: final, whoever reads it.
            Err(e @ SealError::Moved { .. }) => Err(e),
            Err(_) => {
                let key = crate::vault::unwrap_vault(self.store, &own.ids)
                    .map_err(|e| SealError::Vault(Box::new(e.into())))?;
                let vault = self.vault.insert(Opener::vault(&key));
                vault.open_at(ciphertext, &[location])
            }
        }
    }
}
