//! The store's vault key (DESIGN §4) and new X25519 identities for `vars keygen`. What is wrapped
//! where is [`crate::vault`]'s business; this file only holds the key.

use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;

use super::{CryptoError, native};
use crate::secret::SecretBytes;

/// The store's vault key: an X25519 identity every secret is also encrypted to (DESIGN §4).
pub struct VaultKey {
    identity: age::x25519::Identity,
    /// The same key, unwrapping stanzas through the build's native arithmetic.
    pub(super) unwrapper: native::X25519Identity,
}

impl VaultKey {
    fn new(identity: age::x25519::Identity) -> Self {
        VaultKey {
            unwrapper: native::X25519Identity::new(&identity),
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

    /// An authenticator of `data` only the vault key's holder can compute (HMAC-SHA-256 under
    /// a key derived from the vault identity with HKDF, separated by `label`), as hex. The
    /// store's bookkeeping carries these, so a command that holds the vault can tell its own
    /// writing from a forgery (anyone can encrypt to public recipients; only this key can
    /// authenticate).
    pub fn authenticate(&self, label: &str, data: &[u8]) -> String {
        use hmac::Mac as _;
        let secret = self.identity.to_string();
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(
            Some(b"vars store authenticator v1"),
            secret.expose_secret().as_bytes(),
        );
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(label.as_bytes(), &mut key[..])
            .expect("32 bytes is a valid HKDF-SHA-256 output length");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key[..])
            .expect("HMAC takes a key of any length");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `tag` is [`VaultKey::authenticate`]'s tag of `data` (compared in constant time).
    pub fn verify(&self, label: &str, data: &[u8], tag: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let want = self.authenticate(label, data);
        want.len() == tag.len() && bool::from(want.as_bytes().ct_eq(tag.as_bytes()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticators_are_the_keys_own() {
        let (a, b) = (VaultKey::generate(), VaultKey::generate());
        let tag = a.authenticate("label", b"data");
        assert!(a.verify("label", b"data", &tag));
        assert!(!a.verify("other label", b"data", &tag));
        assert!(!a.verify("label", b"datA", &tag));
        assert!(!b.verify("label", b"data", &tag));
        assert!(!a.verify("label", b"data", ""));
    }

    #[test]
    fn vault_key_round_trips_through_its_secret() {
        let v = VaultKey::generate();
        let again = VaultKey::from_secret(&v.to_secret()).unwrap();
        assert_eq!(v.recipient(), again.recipient());
        assert!(VaultKey::from_secret(&SecretBytes::new(b"nothing".to_vec())).is_err());
    }
}
