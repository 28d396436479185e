//! Identities: reading the content of an identity file of any kind vars accepts, and decrypting
//! with the result. Which files are read, and in which order, is [`crate::identity`]'s business;
//! it hands each file's bytes to [`Identities::add_identity`], which does everything else in one
//! pass: tell the format from the bytes, check that a plugin's program exists, get a passphrase
//! (from a file or through the [`Interaction`]), decrypt a protected identity, and refuse what
//! vars does not decrypt with (ssh-rsa keys, SECURITY.md).
//!
//! Kinds, told apart by content:
//!
//! - age identity files (`AGE-SECRET-KEY-1…`, and `AGE-PLUGIN-…` lines that run
//!   `age-plugin-<name>` from `PATH`, e.g. `age-plugin-yubikey`);
//! - passphrase-protected age identity files (`age -p` output, binary or armored);
//! - OpenSSH ed25519 private keys, with or without a passphrase.
//!
//! Passphrase encryption itself (age's scrypt recipient, what `age -p` writes) is here too:
//! [`encrypt_with_passphrase`] protects an identity file, [`decrypt_with_passphrase`] opens one.

use std::io::{self, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use super::CryptoError;
use super::interaction::{self, Callbacks, Interaction};
use super::vault_key::VaultKey;
use crate::fs_util;
use crate::secret::SecretBytes;

/// Where the passphrase of a protected identity comes from.
#[derive(Debug, Clone, Copy)]
pub enum PassphraseSource<'a> {
    /// Ask through the installed [`Interaction`] (the `vars` binary asks on its terminal).
    Ask,
    /// Read this file (`$VARS_PASSPHRASE_FILE`); one trailing newline is not part of it.
    File(&'a Path),
}

/// A set of identities that can decrypt (admin keys, host keys, the unwrapped vault key).
#[derive(Default)]
pub struct Identities {
    inner: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Where each came from, for error messages.
    pub sources: Vec<String>,
}

impl Identities {
    /// Whether no identity is loaded.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Load an identity file as it is, passphrases asked through the installed interaction.
    /// Unlike [`crate::identity::add_file`], its permissions are not checked: for keys the
    /// program made itself (tests, host keys it was told to use).
    pub fn add_file(&mut self, path: &Path) -> Result<(), CryptoError> {
        let bytes = SecretBytes::new(fs_util::read(path)?);
        self.add_identity(&bytes, &path.display().to_string(), PassphraseSource::Ask)
    }

    /// Load the content of one identity file of any kind, named `source` in messages (never
    /// its content). A protected identity is decrypted now, so that a wrong passphrase is
    /// reported here and not as "cannot decrypt" later; plugin identities keep the installed
    /// interaction for the plugin's messages and questions.
    pub fn add_identity(
        &mut self,
        bytes: &SecretBytes,
        source: &str,
        passphrase: PassphraseSource<'_>,
    ) -> Result<(), CryptoError> {
        self.load(bytes, source, passphrase, &interaction::interaction(), true)
    }

    /// [`Self::add_identity`] with a given interaction. `outer` is false for the content of a
    /// passphrase-protected file, which may not be passphrase-protected again.
    pub(crate) fn load(
        &mut self,
        bytes: &SecretBytes,
        source: &str,
        passphrase: PassphraseSource<'_>,
        ui: &Arc<dyn Interaction>,
        outer: bool,
    ) -> Result<(), CryptoError> {
        let bad = |reason: String| CryptoError::BadIdentity {
            path: PathBuf::from(source),
            reason,
        };
        match identity_format(bytes.expose()).map_err(bad)? {
            IdentityFormat::Age => {
                for name in plugin_names(bytes.expose()) {
                    let binary = format!("age-plugin-{name}");
                    if !on_path(&binary) {
                        return Err(CryptoError::PluginMissing {
                            source_name: source.to_owned(),
                            binary,
                        });
                    }
                }
                let file = age::IdentityFile::from_buffer(BufReader::new(bytes.expose()))
                    .map_err(|e| bad(e.to_string()))?;
                let ids = file
                    .with_callbacks(Callbacks(ui.clone()))
                    .into_identities()
                    .map_err(|e| bad(e.to_string()))?;
                if ids.is_empty() {
                    return Err(bad("it contains no identities".into()));
                }
                self.inner.extend(ids);
            }
            IdentityFormat::Ssh => {
                let id = ssh_identity(bytes, source).map_err(bad)?;
                refuse_rsa(&id, source)?;
                self.inner.push(Box::new(id));
            }
            IdentityFormat::SshEncrypted => {
                let id = ssh_identity(bytes, source).map_err(bad)?;
                refuse_rsa(&id, source)?;
                let age::ssh::Identity::Encrypted(key) = id else {
                    return Err(bad("the ssh key is not passphrase-protected".into()));
                };
                let pass = ask(passphrase, ui, source)?;
                match key.decrypt(passphrase_string(&pass)?) {
                    Ok(unencrypted) => self
                        .inner
                        .push(Box::new(age::ssh::Identity::Unencrypted(unencrypted))),
                    Err(age::DecryptError::KeyDecryptionFailed) => {
                        return Err(CryptoError::WrongPassphrase {
                            source_name: source.to_owned(),
                        });
                    }
                    Err(e) => return Err(bad(e.to_string())),
                }
            }
            IdentityFormat::PassphraseProtected if outer => {
                let pass = ask(passphrase, ui, source)?;
                let inner = decrypt_with_passphrase(bytes.expose(), &pass)?.ok_or_else(|| {
                    CryptoError::WrongPassphrase {
                        source_name: source.to_owned(),
                    }
                })?;
                // The inner file is named like the outer one and pushes its own source.
                return self.load(&inner, source, passphrase, ui, false);
            }
            IdentityFormat::PassphraseProtected => {
                return Err(bad(
                    "it is passphrase-protected twice; decrypt the outer layer first".into(),
                ));
            }
        }
        self.sources.push(source.to_owned());
        Ok(())
    }

    /// Add an X25519 identity held in memory (the unwrapped vault key).
    pub fn add_vault(&mut self, vault: &VaultKey) {
        self.inner.push(Box::new(vault.unwrapper.clone()));
        self.sources.push("the vault key".into());
    }

    /// Decrypt an age file (binary or armored).
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<SecretBytes, CryptoError> {
        if self.inner.is_empty() {
            return Err(CryptoError::Decrypt("no identity loaded".into()));
        }
        let reader = age::armor::ArmoredReader::new(ciphertext);
        let decryptor = age::Decryptor::new_buffered(reader)
            .map_err(|e| CryptoError::Decrypt(e.to_string()))?;
        let mut r = decryptor
            .decrypt(self.inner.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| CryptoError::Decrypt(e.to_string()))?;
        let mut out = Vec::with_capacity(ciphertext.len());
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(SecretBytes::new(out)),
            Err(e) => {
                let _ = SecretBytes::new(out); // zeroize the partial plaintext
                Err(CryptoError::Decrypt(e.to_string()))
            }
        }
    }
}

fn ssh_identity(bytes: &SecretBytes, source: &str) -> Result<age::ssh::Identity, String> {
    age::ssh::Identity::from_buffer(BufReader::new(bytes.expose()), Some(source.to_owned()))
        .map_err(|e| e.to_string())
}

/// ssh-rsa private keys are refused before any passphrase is asked for: the `rsa` crate's
/// decryption is not constant-time (RUSTSEC-2023-0071, SECURITY.md).
fn refuse_rsa(id: &age::ssh::Identity, source: &str) -> Result<(), CryptoError> {
    match age::ssh::Recipient::try_from(id.clone()) {
        Ok(age::ssh::Recipient::SshRsa(..)) => Err(CryptoError::RsaIdentity {
            source_name: source.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The passphrase for `source`: read from the file, else asked through the interaction.
fn ask(
    from: PassphraseSource<'_>,
    ui: &Arc<dyn Interaction>,
    source: &str,
) -> Result<SecretBytes, CryptoError> {
    match from {
        PassphraseSource::File(file) => {
            let mut bytes = fs_util::read(file).map_err(CryptoError::PassphraseFile)?;
            // `echo pass > file` adds a newline that is not part of the passphrase.
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            Ok(SecretBytes::new(bytes))
        }
        PassphraseSource::Ask => ui
            .request_secret(&format!("Passphrase for {source}"))
            .ok_or_else(|| CryptoError::NoPassphrase {
                source_name: source.to_owned(),
            }),
    }
}

/// Whether a program is on `PATH` (as age looks for plugins).
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// What an identity file holds, decided from its bytes without decrypting anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityFormat {
    /// An age identity file: `AGE-SECRET-KEY-1…` and/or `AGE-PLUGIN-…` lines.
    Age,
    /// An age file encrypted with a passphrase (`age -p`, binary or armored) that should hold
    /// an age identity file.
    PassphraseProtected,
    /// An OpenSSH private key without a passphrase.
    Ssh,
    /// An OpenSSH private key protected by a passphrase.
    SshEncrypted,
}

/// Classify identity-file bytes. Errors say why the bytes are none of the known formats
/// (never what they contain).
pub fn identity_format(bytes: &[u8]) -> Result<IdentityFormat, String> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let rest = &bytes[start..];
    if rest.starts_with(b"age-encryption.org/")
        || rest.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(rest))
            .map_err(|e| format!("it is an age file with a bad header: {e}"))?;
        return if decryptor.is_scrypt() {
            Ok(IdentityFormat::PassphraseProtected)
        } else {
            Err("it is an age file encrypted to recipients, not with a passphrase; decrypt it first".into())
        };
    }
    if rest.starts_with(b"-----BEGIN") {
        return match age::ssh::Identity::from_buffer(BufReader::new(rest), None) {
            Ok(age::ssh::Identity::Encrypted(_)) => Ok(IdentityFormat::SshEncrypted),
            Ok(age::ssh::Identity::Unencrypted(_)) => Ok(IdentityFormat::Ssh),
            Ok(age::ssh::Identity::Unsupported(k)) => Err(format!("unsupported ssh key: {k:?}")),
            Err(e) => Err(e.to_string()),
        };
    }
    Ok(IdentityFormat::Age)
}

/// The plugin names (`yubikey` for `AGE-PLUGIN-YUBIKEY-1…`) an age identity file refers to,
/// sorted and without repeats; lines that are not plugin identities are skipped.
pub fn plugin_names(identity_file: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(identity_file);
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-PLUGIN-"))
        .filter_map(|l| age::plugin::Identity::from_str(l).ok())
        .map(|i| i.plugin().to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The identity line age uses for a plugin's default identity (`AGE-PLUGIN-<NAME>-1…`): a
/// well-formed plugin identity that holds no key, e.g. to test what happens without the plugin.
pub fn plugin_default_identity(plugin: &str) -> Result<String, CryptoError> {
    age::plugin::Identity::default_for_plugin(plugin)
        .map(|i| i.to_string())
        .map_err(|e| CryptoError::BadRecipient {
            reason: format!("bad plugin name {plugin:?}: {e}"),
        })
}

/// The largest scrypt work factor (`log2 N`) accepted when decrypting.
const MAX_WORK_FACTOR: u8 = 22;

/// Decrypt a passphrase-protected age file (`age -p` output). `Ok(None)` means the passphrase
/// is wrong; errors mean the file is damaged or asks for more scrypt work than is reasonable.
pub fn decrypt_with_passphrase(
    ciphertext: &[u8],
    passphrase: &SecretBytes,
) -> Result<Option<SecretBytes>, CryptoError> {
    let mut identity = age::scrypt::Identity::new(passphrase_string(passphrase)?);
    // age caps the work at 16× what this machine does in a second *now*, so a loaded machine
    // (a parallel test run, a busy CI) refused files it wrote itself a moment earlier. A fixed
    // cap instead, at the bound age's documentation calls large (N = 2^22, 4 GiB): the files
    // are the user's own identity files, and `age -p` writes about 2^18 on today's machines.
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(ciphertext))
        .map_err(|e| CryptoError::Decrypt(e.to_string()))?;
    let mut r = match decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity)) {
        Ok(r) => r,
        Err(age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys) => {
            return Ok(None);
        }
        Err(e) => return Err(CryptoError::Decrypt(e.to_string())),
    };
    let mut out = Vec::with_capacity(ciphertext.len());
    match r.read_to_end(&mut out) {
        Ok(_) => Ok(Some(SecretBytes::new(out))),
        Err(e) => {
            let _ = SecretBytes::new(out); // zeroize the partial plaintext
            Err(CryptoError::Decrypt(e.to_string()))
        }
    }
}

/// Encrypt `plaintext` with a passphrase (what `age -p` does), e.g. to protect an identity file.
pub fn encrypt_with_passphrase(
    plaintext: &SecretBytes,
    passphrase: &SecretBytes,
    armor: bool,
) -> Result<Vec<u8>, CryptoError> {
    let encryptor = age::Encryptor::with_user_passphrase(passphrase_string(passphrase)?);
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let fail = |e: io::Error| CryptoError::Encrypt(e.to_string());
    if armor {
        let armored =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(fail)?;
        let mut w = encryptor.wrap_output(armored).map_err(fail)?;
        w.write_all(plaintext.expose()).map_err(fail)?;
        w.finish().and_then(|a| a.finish()).map_err(fail)?;
    } else {
        let mut w = encryptor.wrap_output(&mut out).map_err(fail)?;
        w.write_all(plaintext.expose()).map_err(fail)?;
        w.finish().map_err(fail)?;
    }
    Ok(out)
}

/// The passphrase as the text age wants.
pub(super) fn passphrase_string(
    passphrase: &SecretBytes,
) -> Result<age::secrecy::SecretString, CryptoError> {
    let text = std::str::from_utf8(passphrase.expose())
        .map_err(|_| CryptoError::Decrypt("the passphrase is not UTF-8 text".into()))?;
    Ok(age::secrecy::SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::interaction::NoInteraction;
    use crate::crypto::{Recipient, encrypt, encrypt_with_passphrase, new_identity};

    /// Answers every passphrase request with the same text, and counts them.
    struct Scripted(&'static str, std::sync::atomic::AtomicUsize);

    impl Interaction for Scripted {
        fn message(&self, _: &str) {}
        fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
            None
        }
        fn request_public(&self, _: &str) -> Option<String> {
            None
        }
        fn request_secret(&self, _: &str) -> Option<SecretBytes> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(SecretBytes::new(self.0.as_bytes().to_vec()))
        }
    }

    #[test]
    fn loads_plain_and_passphrase_protected_identities_in_one_pass() {
        let (text, recipient) = new_identity();
        let r = Recipient::parse(&recipient).unwrap();
        let ct = encrypt(&SecretBytes::new(b"hi".to_vec()), &[&r], false).unwrap();
        let none: Arc<dyn Interaction> = Arc::new(NoInteraction);

        let mut ids = Identities::default();
        ids.load(&text, "plain", PassphraseSource::Ask, &none, true)
            .unwrap();
        assert_eq!(ids.decrypt(&ct).unwrap().expose(), b"hi");
        assert_eq!(ids.sources, ["plain"]);

        let pass = SecretBytes::new(b"pw".to_vec());
        let once = SecretBytes::new(encrypt_with_passphrase(&text, &pass, true).unwrap());
        // Nobody to ask: said so, by name.
        let err = Identities::default()
            .load(&once, "locked", PassphraseSource::Ask, &none, true)
            .unwrap_err();
        assert!(
            matches!(err, CryptoError::NoPassphrase { ref source_name } if source_name == "locked")
        );
        // Asked once through the interaction, then decrypted.
        let right = Arc::new(Scripted("pw", Default::default()));
        let ui: Arc<dyn Interaction> = right.clone();
        let mut ids = Identities::default();
        ids.load(&once, "locked", PassphraseSource::Ask, &ui, true)
            .unwrap();
        assert_eq!(right.1.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(ids.decrypt(&ct).unwrap().expose(), b"hi");
        assert_eq!(ids.sources, ["locked"], "one source for one file");
        // A wrong one is named as such.
        let wrong: Arc<dyn Interaction> = Arc::new(Scripted("nope", Default::default()));
        let err = Identities::default()
            .load(&once, "locked", PassphraseSource::Ask, &wrong, true)
            .unwrap_err();
        assert!(matches!(err, CryptoError::WrongPassphrase { .. }), "{err}");
        // Protected twice is refused before any passphrase is asked for.
        let err = Identities::default()
            .load(&once, "twice", PassphraseSource::Ask, &none, false)
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn missing_plugin_is_named() {
        // What `age-plugin-yubikey --identity` prints has this shape; the plugin is absent here.
        let line = plugin_default_identity("yubikey").unwrap();
        let err = Identities::default()
            .add_identity(
                &SecretBytes::new(line.into_bytes()),
                "yk",
                PassphraseSource::Ask,
            )
            .unwrap_err();
        match err {
            CryptoError::PluginMissing { binary, .. } => assert_eq!(binary, "age-plugin-yubikey"),
            other => panic!("unexpected {other}"),
        }
    }

    /// A 2048-bit ssh-rsa key (OpenSSH format, no passphrase), made by ssh-keygen for this test.
    const RSA_KEY: &str = include_str!("../../testdata/keys/rsa/id_rsa");

    #[test]
    fn ssh_rsa_identities_are_refused_but_rsa_recipients_work() {
        let err = Identities::default()
            .add_identity(
                &SecretBytes::new(RSA_KEY.as_bytes().to_vec()),
                "id_rsa",
                PassphraseSource::Ask,
            )
            .unwrap_err();
        assert!(matches!(err, CryptoError::RsaIdentity { .. }), "{err}");
        assert!(err.to_string().contains("id_rsa"), "{err}");
        let public = include_str!("../../testdata/keys/rsa/id_rsa.pub");
        let r = Recipient::parse(public).unwrap();
        let ct = encrypt(&SecretBytes::new(b"to rsa".to_vec()), &[&r], false).unwrap();
        assert_eq!(
            crate::crypto::header_stanzas(&ct).unwrap()[0].kind,
            "ssh-rsa"
        );
    }

    #[test]
    fn round_trips_and_a_wrong_passphrase_is_none() {
        let plain = SecretBytes::new(b"AGE-SECRET-KEY-1...".to_vec());
        let pass = SecretBytes::new(b"pw".to_vec());
        // One round (scrypt takes about a second each way); armor is covered in tests/it.
        let ct = encrypt_with_passphrase(&plain, &pass, false).unwrap();
        let back = decrypt_with_passphrase(&ct, &pass).unwrap().unwrap();
        assert_eq!(back.expose(), plain.expose());
        let wrong = SecretBytes::new(b"no".to_vec());
        assert!(decrypt_with_passphrase(&ct, &wrong).unwrap().is_none());
    }
}
