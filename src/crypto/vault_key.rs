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
    fn vault_key_round_trips_through_its_secret() {
        let v = VaultKey::generate();
        let again = VaultKey::from_secret(&v.to_secret()).unwrap();
        assert_eq!(v.recipient(), again.recipient());
        assert!(VaultKey::from_secret(&SecretBytes::new(b"nothing".to_vec())).is_err());
    }
}
