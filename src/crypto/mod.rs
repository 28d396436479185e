//! The only module that touches the `age` crate (STYLE: one seam per external system). Its
//! parts, each a file:
//!
//! - [`recipient`]: parsing recipients and encrypting to them;
//! - [`identities`]: reading identity files of every kind (format sniffing, passphrases, plugin
//!   identities) and decrypting with them. [`crate::identity`] decides *which* files are read
//!   and hands their bytes here: loading goes one way; passphrase (scrypt) encryption, as
//!   `age -p`, to protect identity files;
//! - [`vault_key`]: the store's vault key and new identities for `vars keygen`;
//! - [`header`]: an age header's stanzas without decrypting (for `vars check`);
//! - [`interaction`](mod@interaction): the one way to a person (plugin messages,
//!   passphrases), supplied by the program: the library never reads the terminal;
//! - `curve` (feature `fast-x25519`, on by default) computes `X25519` and `ssh-ed25519`
//!   stanzas on Edwards points; without the feature `ladder` hands them to the age crate's own
//!   arithmetic. SECURITY.md says why both exist; `proofs` tests whichever is built.
//!
//! Callers hold plaintext in [`SecretBytes`](crate::secret::SecretBytes); nothing here logs or
//! formats content.

#[cfg(feature = "fast-x25519")]
mod curve;
pub mod header;
pub mod identities;
pub mod interaction;
#[cfg(not(feature = "fast-x25519"))]
mod ladder;
#[cfg(test)]
mod proofs;
pub mod recipient;
pub mod vault_key;

/// The `X25519`/`ssh-ed25519` arithmetic this build uses.
#[cfg(feature = "fast-x25519")]
use curve as native;
#[cfg(not(feature = "fast-x25519"))]
use ladder as native;

pub use header::{Stanza, header_location, header_stanzas};
pub use identities::{
    Identities, IdentityFormat, PassphraseSource, decrypt_with_passphrase, encrypt_with_passphrase,
    identity_format, plugin_default_identity, plugin_names,
};
pub use interaction::{Interaction, NoInteraction, interaction, set_interaction};
pub use recipient::{LOCATION_STANZA, Recipient, encrypt, encrypt_at, ssh_tag};
pub use vault_key::{VaultKey, new_identity};

use zeroize::Zeroizing;

use crate::fs_util::IoError;

/// Errors from encryption, decryption and key parsing.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A recipient string is not an age, ssh or plugin recipient, or no key protects it.
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
    /// An ssh-rsa private key was offered as an identity. vars decrypts with none (SECURITY.md:
    /// RUSTSEC-2023-0071); ssh-rsa *recipients* still work.
    #[error("{source_name} is an ssh-rsa private key; vars does not decrypt with RSA keys")]
    RsaIdentity {
        /// The identity (file path or keyring entry).
        source_name: String,
    },
    /// An identity is protected by a passphrase and there is nobody to ask (no
    /// `$VARS_PASSPHRASE_FILE`, and the [`Interaction`] cannot ask).
    #[error("{source_name} is protected by a passphrase, and there is no terminal to ask for it")]
    NoPassphrase {
        /// The identity (file path or keyring entry).
        source_name: String,
    },
    /// The passphrase does not decrypt the identity.
    #[error("wrong passphrase for {source_name}")]
    WrongPassphrase {
        /// The identity (file path or keyring entry).
        source_name: String,
    },
    /// The passphrase file cannot be read.
    #[error("cannot read the passphrase: {0}")]
    PassphraseFile(IoError),
    /// An identity file names an age plugin whose program is not on `PATH`.
    #[error(
        "{source_name} is a plugin identity, but {binary} is not installed (not found on PATH)"
    )]
    PluginMissing {
        /// The identity (file path or keyring entry).
        source_name: String,
        /// The plugin program, e.g. `age-plugin-yubikey`.
        binary: String,
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

/// Why a recipient is refused when something is to be encrypted to it.
const LOW_ORDER: &str = "the key is a low-order point of Curve25519, which no private key protects";
const NOT_ON_CURVE: &str = "the key is not a point of Curve25519 (it lies on the twist), so no age private key belongs to it";

#[cfg(feature = "fast-x25519")]
const X25519_TAG: &str = "X25519";
#[cfg(feature = "fast-x25519")]
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
#[cfg(feature = "fast-x25519")]
const SSH_ED25519_TAG: &str = "ssh-ed25519";
#[cfg(feature = "fast-x25519")]
const SSH_ED25519_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";
/// A wrapped file key: the key and ChaCha20-Poly1305's tag.
#[cfg(feature = "fast-x25519")]
const WRAPPED_KEY_BYTES: usize = age_core::format::FILE_KEY_BYTES + 16;

/// HKDF's salt in age's X25519 and ssh-ed25519 stanzas: ephemeral share ‖ recipient.
#[cfg(any(feature = "fast-x25519", test))]
fn salt(share: &[u8; 32], recipient: &[u8; 32]) -> [u8; 64] {
    let mut salt = [0; 64];
    salt[..32].copy_from_slice(share);
    salt[32..].copy_from_slice(recipient);
    salt
}

/// A stanza's ephemeral share: exactly 32 bytes of canonical unpadded base64, as age requires.
#[cfg(feature = "fast-x25519")]
fn decode_share(arg: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let mut buf = [0u8; 33];
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode_slice(arg, &mut buf) {
        Ok(32) => Some(buf[..32].try_into().expect("32 bytes")),
        _ => None,
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
#[cfg(feature = "fast-x25519")]
fn secret_bytes(identity: &age::x25519::Identity) -> Option<Zeroizing<[u8; 32]>> {
    use age::secrecy::ExposeSecret as _;
    bech32_bytes(identity.to_string().expose_secret())
}
