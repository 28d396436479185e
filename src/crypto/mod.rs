//! The only module that touches the `age` crate: parsing recipients and identities, encrypting
//! and decrypting in-process, the vault key, and reading an age header's stanzas without
//! decrypting (for `vars check`).
//!
//! Callers hold plaintext in [`SecretBytes`]; nothing here logs or formats content.
//!
//! `X25519` and `ssh-ed25519` stanzas are computed by `crypto/curve.rs` (the same stanzas as
//! the age crate's, with less arithmetic); ssh-rsa, plugins and admin identities go through age
//! itself.

mod curve;

use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::fs_util::{self, IoError};
use crate::secret::SecretBytes;

/// Errors from encryption, decryption and key parsing.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A recipient string is not an age, ssh or plugin recipient.
    #[error("not a valid recipient: {reason}")]
    BadRecipient {
        /// Why it was rejected.
        reason: String,
    },
    /// An identity file could not be parsed.
    #[error("{} is not an age identity file or an ssh private key: {reason}", path.display())]
    BadIdentity {
        /// The file.
        path: std::path::PathBuf,
        /// Why (never the file's content).
        reason: String,
    },
    /// Encryption failed (a plugin failed, or incompatible recipients).
    #[error("encryption failed: {0}")]
    Encrypt(String),
    /// None of the identities could decrypt the file, or the file is damaged.
    #[error("cannot decrypt: {0}")]
    Decrypt(String),
    /// Reading an identity file failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A parsed recipient together with the text it was written as.
pub struct Recipient {
    text: String,
    inner: RecipientKind,
}

enum RecipientKind {
    X25519(curve::X25519Recipient),
    SshEd25519(Box<curve::SshEd25519Recipient>),
    SshRsa(age::ssh::Recipient),
    Plugin(age::plugin::Recipient),
}

impl Recipient {
    /// Parse `age1…`, `ssh-ed25519 …`, `ssh-rsa …` or a plugin recipient (`age1yubikey1…`).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bad = |reason: &str| CryptoError::BadRecipient {
            reason: reason.to_owned(),
        };
        let inner = if text.starts_with("ssh-") {
            match age::ssh::Recipient::from_str(text).map_err(|e| bad(&format!("{e:?}")))? {
                age::ssh::Recipient::SshEd25519(wire, point) => RecipientKind::SshEd25519(
                    Box::new(curve::SshEd25519Recipient::new(wire, point)),
                ),
                rsa @ age::ssh::Recipient::SshRsa(..) => RecipientKind::SshRsa(rsa),
            }
        } else if age::x25519::Recipient::from_str(text).is_ok() {
            let public = bech32_bytes(text).ok_or_else(|| bad("not bech32"))?;
            RecipientKind::X25519(curve::X25519Recipient::new(*public))
        } else if text.starts_with("age1") {
            match age::plugin::Recipient::from_str(text) {
                Ok(r) => RecipientKind::Plugin(r),
                Err(_) => {
                    return Err(CryptoError::BadRecipient {
                        reason: "an age1… recipient must be 62 characters of bech32 (as printed by age-keygen) or a plugin recipient age1<plugin>1…".into(),
                    })
                }
            }
        } else {
            return Err(CryptoError::BadRecipient {
                reason: "expected age1…, ssh-ed25519 … or ssh-rsa …".into(),
            });
        };
        Ok(Recipient {
            text: text.to_owned(),
            inner,
        })
    }

    /// The recipient as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// For ssh recipients, the 4-byte tag age puts in the stanza (`-> ssh-ed25519 TAG …`),
    /// base64 encoded; `None` for recipients whose stanzas do not name them.
    pub fn ssh_tag(&self) -> Option<String> {
        match &self.inner {
            RecipientKind::SshEd25519(_) | RecipientKind::SshRsa(_) => ssh_tag(&self.text),
            _ => None,
        }
    }
}

/// The 32 bytes of a bech32 key (`age1…`, `AGE-SECRET-KEY-1…`) the age crate has accepted.
fn bech32_bytes(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    age_core::primitives::bech32_decode(
        text,
        |_| (),
        |_| Ok(()),
        |_, bytes| {
            let mut out = Zeroizing::new([0u8; 32]);
            let mut n = 0;
            for b in bytes {
                *out.get_mut(n).ok_or(())? = b;
                n += 1;
            }
            if n == 32 { Ok(out) } else { Err(()) }
        },
    )
    .ok()
}

/// The secret scalar of an age X25519 identity.
fn secret_bytes(identity: &age::x25519::Identity) -> Option<Zeroizing<[u8; 32]>> {
    bech32_bytes(identity.to_string().expose_secret())
}

/// age's ssh stanza tag for an `ssh-…` recipient: the first 4 bytes of SHA-256 of the ssh
/// wire-format public key, base64 encoded; `None` for other recipients. Cheaper than
/// [`Recipient::parse`] followed by [`Recipient::ssh_tag`]: nothing but the hash.
pub fn ssh_tag(text: &str) -> Option<String> {
    if !text.trim_start().starts_with("ssh-") {
        return None;
    }
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = text.split_whitespace().nth(1)?;
    let wire = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let digest = sha2::Sha256::digest(&wire);
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..4]))
}

/// Encrypt `plaintext` to every recipient. Plugin recipients call their plugin program.
pub fn encrypt(
    plaintext: &SecretBytes,
    recipients: &[&Recipient],
    armor: bool,
) -> Result<Vec<u8>, CryptoError> {
    let mut plugin_recipients: Vec<age::plugin::Recipient> = Vec::new();
    let mut natives: Vec<&dyn age::Recipient> = Vec::new();
    // A recipient no key protects is refused by name, before anything is encrypted.
    let low_order = |r: &Recipient, reason: &str| CryptoError::BadRecipient {
        reason: format!("{}: {reason}", r.text),
    };
    for r in recipients {
        match &r.inner {
            RecipientKind::X25519(x) => {
                x.prepare().map_err(|e| low_order(r, e))?;
                natives.push(x);
            }
            RecipientKind::SshEd25519(s) => {
                s.prepare().map_err(|e| low_order(r, e))?;
                natives.push(s.as_ref());
            }
            RecipientKind::SshRsa(s) => natives.push(s),
            RecipientKind::Plugin(p) => plugin_recipients.push(p.clone()),
        }
    }
    let mut plugins = Vec::new();
    let mut names: Vec<String> = plugin_recipients
        .iter()
        .map(|p| p.plugin().to_owned())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let these: Vec<_> = plugin_recipients
            .iter()
            .filter(|p| p.plugin() == name)
            .cloned()
            .collect();
        let plugin = age::plugin::RecipientPluginV1::new(&name, &these, &[], UiCallbacks)
            .map_err(|e| CryptoError::Encrypt(format!("age plugin age-plugin-{name}: {e}")))?;
        plugins.push(plugin);
    }
    let all = natives
        .into_iter()
        .chain(plugins.iter().map(|p| p as &dyn age::Recipient));
    let encryptor =
        age::Encryptor::with_recipients(all).map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    if armor {
        let armored =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
        let mut w = encryptor
            .wrap_output(armored)
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
        w.write_all(plaintext.expose())
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
        w.finish()
            .and_then(|a| a.finish())
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    } else {
        let mut w = encryptor
            .wrap_output(&mut out)
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
        w.write_all(plaintext.expose())
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
        w.finish()
            .map_err(|e| CryptoError::Encrypt(e.to_string()))?;
    }
    Ok(out)
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

    /// Load an age identity file (X25519 or plugin lines) or an ssh private key.
    pub fn add_file(&mut self, path: &Path) -> Result<(), CryptoError> {
        let bytes = SecretBytes::new(fs_util::read(path)?);
        self.add_bytes(bytes.expose(), &path.display().to_string())
            .map_err(|reason| CryptoError::BadIdentity {
                path: path.to_path_buf(),
                reason,
            })
    }

    /// Load identities from bytes (an identity file's content); `source` names it in errors.
    pub fn add_bytes(&mut self, bytes: &[u8], source: &str) -> Result<(), String> {
        let text_start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        if bytes[text_start..].starts_with(b"-----BEGIN") {
            let id =
                age::ssh::Identity::from_buffer(BufReader::new(bytes), Some(source.to_owned()))
                    .map_err(|e| e.to_string())?;
            match id {
                age::ssh::Identity::Unsupported(k) => {
                    return Err(format!("unsupported ssh key: {k:?}"));
                }
                id @ age::ssh::Identity::Encrypted(_) => {
                    self.inner.push(Box::new(id.with_callbacks(UiCallbacks)));
                }
                id => self.inner.push(Box::new(id)),
            }
        } else {
            let file =
                age::IdentityFile::from_buffer(BufReader::new(bytes)).map_err(|e| e.to_string())?;
            let ids = file
                .with_callbacks(UiCallbacks)
                .into_identities()
                .map_err(|e| e.to_string())?;
            if ids.is_empty() {
                return Err("it contains no identities".into());
            }
            self.inner.extend(ids);
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

/// The store's vault key: an X25519 identity every secret is also encrypted to (DESIGN §4).
pub struct VaultKey {
    identity: age::x25519::Identity,
    /// The same key, unwrapping stanzas through `crypto/curve.rs`.
    unwrapper: curve::X25519Identity,
}

impl VaultKey {
    fn new(identity: age::x25519::Identity) -> Self {
        let secret = secret_bytes(&identity).expect("an age identity is 32 bytes of bech32");
        VaultKey {
            unwrapper: curve::X25519Identity::new(secret),
            identity,
        }
    }

    /// A fresh random vault key.
    pub fn generate() -> Self {
        Self::new(age::x25519::Identity::generate())
    }

    /// Parse the identity text as stored inside `keys/vault.age`.
    pub fn from_secret(secret: &SecretBytes) -> Result<Self, CryptoError> {
        let text = std::str::from_utf8(secret.expose())
            .map_err(|_| CryptoError::Decrypt("the vault key is not text".into()))?;
        let line = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .ok_or_else(|| CryptoError::Decrypt("keys/vault.age holds no AGE-SECRET-KEY".into()))?;
        let identity = age::x25519::Identity::from_str(line.trim())
            .map_err(|e| CryptoError::Decrypt(format!("the vault key is malformed: {e}")))?;
        Ok(Self::new(identity))
    }

    /// The identity as an age identity file, to be encrypted into `keys/vault.age`.
    pub fn to_secret(&self) -> SecretBytes {
        let mut s = self
            .identity
            .to_string()
            .expose_secret()
            .as_bytes()
            .to_vec();
        s.push(b'\n');
        SecretBytes::new(s)
    }

    /// The public recipient (`keys/vault.pub`).
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }
}

/// A new X25519 identity file's text and its recipient, for `vars keygen`.
pub fn new_identity() -> (SecretBytes, String) {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# public key: {recipient}\n{}\n",
        id.to_string().expose_secret()
    );
    (SecretBytes::new(text.into_bytes()), recipient)
}

/// One recipient stanza of an age header, as `check` sees it without decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The stanza type: `X25519`, `ssh-ed25519`, `ssh-rsa`, or a plugin's tag.
    pub kind: String,
    /// The first argument (for ssh stanzas, the key tag).
    pub first_arg: Option<String>,
}

/// Read the recipient stanzas of an age file's header (binary or armored), without decrypting.
/// Grease stanzas (random `*-grease` stanzas age adds to keep parsers honest) are left out.
pub fn header_stanzas(ciphertext: &[u8]) -> Result<Vec<Stanza>, CryptoError> {
    let header = if ciphertext.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
        let mut r = age::armor::ArmoredReader::new(ciphertext);
        let mut buf = Vec::new();
        // The header is at most a few KiB; reading the whole dearmored file is fine for a check.
        r.read_to_end(&mut buf)
            .map_err(|e| CryptoError::Decrypt(format!("bad armor: {e}")))?;
        buf
    } else {
        ciphertext.to_vec()
    };
    parse_header(&header)
        .ok_or_else(|| CryptoError::Decrypt("not an age file, or its header is damaged".into()))
}

fn parse_header(bytes: &[u8]) -> Option<Vec<Stanza>> {
    let mut lines = bytes.split(|b| *b == b'\n');
    if lines.next()? != b"age-encryption.org/v1" {
        return None;
    }
    let mut stanzas = Vec::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?;
        if let Some(rest) = line.strip_prefix("-> ") {
            let mut parts = rest.split(' ');
            let kind = parts.next()?.to_owned();
            let first_arg = parts.next().map(str::to_owned);
            if !kind.ends_with("-grease") {
                stanzas.push(Stanza { kind, first_arg });
            }
        } else if line.starts_with("---") {
            // The MAC line ends the header; a payload must follow.
            return Some(stanzas);
        }
    }
    None
}

/// Prompts from age (plugins, encrypted ssh keys) go to the terminal on stderr.
#[derive(Clone, Copy)]
struct UiCallbacks;

impl age::Callbacks for UiCallbacks {
    fn display_message(&self, message: &str) {
        let _ = writeln!(io::stderr(), "{message}");
    }
    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        let _ = writeln!(
            io::stderr(),
            "{message} [{yes}{}]",
            no.map(|n| format!("/{n}")).unwrap_or_default()
        );
        let mut line = String::new();
        io::stdin().read_line(&mut line).ok()?;
        Some(line.trim().eq_ignore_ascii_case(yes) || line.trim().eq_ignore_ascii_case("y"))
    }
    fn request_public_string(&self, description: &str) -> Option<String> {
        let _ = write!(io::stderr(), "{description}: ");
        let mut line = String::new();
        io::stdin().read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }
    fn request_passphrase(&self, description: &str) -> Option<age::secrecy::SecretString> {
        rpassword::prompt_password(format!("{description}: "))
            .ok()
            .map(Into::into)
    }
}

/// What an identity file holds, decided from its bytes without decrypting anything, so that
/// [`crate::identity`] knows whether it must ask for a passphrase first.
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

/// Decrypt a passphrase-protected age file (`age -p` output). `Ok(None)` means the passphrase
/// is wrong; errors mean the file is damaged or asks for more scrypt work than is reasonable.
pub fn decrypt_with_passphrase(
    ciphertext: &[u8],
    passphrase: &SecretBytes,
) -> Result<Option<SecretBytes>, CryptoError> {
    let identity = age::scrypt::Identity::new(passphrase_string(passphrase)?);
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

fn passphrase_string(passphrase: &SecretBytes) -> Result<age::secrecy::SecretString, CryptoError> {
    let text = std::str::from_utf8(passphrase.expose())
        .map_err(|_| CryptoError::Decrypt("the passphrase is not UTF-8 text".into()))?;
    Ok(age::secrecy::SecretString::from(text.to_owned()))
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

impl Identities {
    /// Load an OpenSSH private key protected by a passphrase, decrypting it now with
    /// `passphrase` (so a wrong one is reported here, not as "cannot decrypt" later).
    /// `Ok(false)` means the passphrase is wrong.
    pub fn add_encrypted_ssh(
        &mut self,
        bytes: &[u8],
        source: &str,
        passphrase: &SecretBytes,
    ) -> Result<bool, String> {
        let id = age::ssh::Identity::from_buffer(BufReader::new(bytes), Some(source.to_owned()))
            .map_err(|e| e.to_string())?;
        let age::ssh::Identity::Encrypted(key) = id else {
            return Err("the ssh key is not passphrase-protected".into());
        };
        let pass = passphrase_string(passphrase).map_err(|e| e.to_string())?;
        match key.decrypt(pass) {
            Ok(unencrypted) => {
                self.inner
                    .push(Box::new(age::ssh::Identity::Unencrypted(unencrypted)));
                self.sources.push(source.to_owned());
                Ok(true)
            }
            Err(age::DecryptError::KeyDecryptionFailed) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSH_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN root@host";

    #[test]
    fn parses_recipient_kinds_and_rejects_garbage() {
        let (_, r) = new_identity();
        assert!(Recipient::parse(&r).is_ok());
        assert!(Recipient::parse(SSH_PUB).is_ok());
        assert!(
            Recipient::parse(
                "age1yubikey1qgqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqxwspvz"
            )
            .is_ok()
        );
        for bad in ["", "hello", "age1xyz", "ssh-ed25519 AAAA"] {
            assert!(Recipient::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn low_order_keys_are_refused_by_name_where_age_would_panic() {
        let (_, fine) = new_identity();
        let fine = Recipient::parse(&fine).unwrap();
        for zero_or_one in [
            "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z",
            "age1qyqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqj7vrya",
        ] {
            assert!(age::x25519::Recipient::from_str(zero_or_one).is_ok());
            let low = Recipient::parse(zero_or_one).unwrap();
            let err = encrypt(&SecretBytes::new(b"x".to_vec()), &[&fine, &low], false)
                .expect_err("refused");
            assert!(
                matches!(err, CryptoError::BadRecipient { .. })
                    && err.to_string().contains(zero_or_one)
                    && err.to_string().contains("low-order"),
                "{err}"
            );
        }
    }

    #[test]
    fn encrypt_decrypt_round_trip_and_header() {
        let (id_text, r) = new_identity();
        let rec = Recipient::parse(&r).unwrap();
        let ssh = Recipient::parse(SSH_PUB).unwrap();
        for armor in [false, true] {
            let ct = encrypt(&SecretBytes::new(b"s3cret".to_vec()), &[&rec, &ssh], armor).unwrap();
            let mut ids = Identities::default();
            ids.add_bytes(id_text.expose(), "test").unwrap();
            assert_eq!(ids.decrypt(&ct).unwrap().expose(), b"s3cret");
            let st = header_stanzas(&ct).unwrap();
            assert_eq!(st.len(), 2);
            assert_eq!(st[0].kind, "X25519");
            assert_eq!(st[1].kind, "ssh-ed25519");
            assert_eq!(st[1].first_arg, ssh.ssh_tag());
        }
    }

    #[test]
    fn truncated_file_is_rejected() {
        let (_, r) = new_identity();
        let rec = Recipient::parse(&r).unwrap();
        let ct = encrypt(&SecretBytes::new(b"x".to_vec()), &[&rec], false).unwrap();
        assert!(header_stanzas(&ct[..20]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        #[test]
        fn any_plaintext_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096), armor: bool) {
            let v = VaultKey::generate();
            let r = Recipient::parse(&v.recipient()).unwrap();
            let ct = encrypt(&SecretBytes::new(bytes.clone()), &[&r], armor).unwrap();
            let mut ids = Identities::default();
            ids.add_vault(&v);
            let plain = ids.decrypt(&ct).unwrap();
            proptest::prop_assert_eq!(plain.expose(), &bytes[..]);
        }
    }

    #[test]
    fn vault_key_round_trips_through_its_secret() {
        let v = VaultKey::generate();
        let again = VaultKey::from_secret(&v.to_secret()).unwrap();
        assert_eq!(v.recipient(), again.recipient());
    }
}
