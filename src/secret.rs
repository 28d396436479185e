//! The plaintext newtype. Every byte of secret material that vars holds in memory lives in a
//! [`SecretBytes`]: zeroized on drop, no `Debug`, `Display`, `Serialize` or `Clone` that could
//! copy it somewhere unintended. Only the sandbox (writing `$in`/`$prompts`), the crypto module
//! (encrypting) and `vars get`/`vars install` call [`SecretBytes::expose`].

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};

/// Plaintext secret bytes, zeroized when dropped.
pub struct SecretBytes(SecretBox<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; the caller's buffer moves in and is zeroized on drop.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// The plaintext. Call only where the bytes are encrypted or written to a private place.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the buffer holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.0.expose_secret().capacity()
    }

    /// Append `bytes`, which must fit in the capacity: growing would leave an unzeroed copy
    /// of the old buffer in freed memory.
    pub fn extend_within_capacity(&mut self, bytes: &[u8]) {
        let v = self.0.expose_secret_mut();
        assert!(
            v.len() + bytes.len() <= v.capacity(),
            "SecretBytes must not reallocate"
        );
        v.extend_from_slice(bytes);
    }

    /// A second zeroizing copy, made explicitly (there is deliberately no `Clone`).
    pub fn duplicate(&self) -> Self {
        Self::new(self.expose().to_vec())
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_bytes() {
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(s.expose(), b"hunter2");
        assert_eq!(s.len(), 7);
        assert_eq!(s.duplicate().expose(), b"hunter2");
    }
}
