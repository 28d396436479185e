//! The `X25519` and `ssh-ed25519` stanzas by the age crate's own arithmetic (x25519-dalek's
//! Montgomery ladder), when vars is built without the `fast-x25519` feature: the way out of
//! [`super::curve`] (SECURITY.md). The types have the shapes of `curve.rs`'s and wrap the age
//! crate's recipients and identity; only the refusals are vars' own, so that both builds refuse
//! the same keys: a recipient that is not a point of Curve25519 or has low order is refused
//! before anything is encrypted to it (age would panic on a low-order one).

use std::collections::HashSet;

use age::{DecryptError, EncryptError};
use age_core::format::{FileKey, Stanza};
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};

use super::{LOW_ORDER, NOT_ON_CURVE};

fn refused(reason: &'static str) -> EncryptError {
    EncryptError::Io(std::io::Error::other(reason))
}

/// An `age1…` recipient.
#[derive(Clone)]
pub(super) struct X25519Recipient {
    check: Result<(), &'static str>,
    inner: age::x25519::Recipient,
}

impl X25519Recipient {
    /// From the 32 bytes of the public key and the age crate's parse of it.
    pub(super) fn new(public: [u8; 32], inner: age::x25519::Recipient) -> Self {
        let check = match MontgomeryPoint(public).to_edwards(0) {
            None => Err(NOT_ON_CURVE),
            Some(p) if p.is_small_order() => Err(LOW_ORDER),
            Some(_) => Ok(()),
        };
        X25519Recipient { check, inner }
    }

    /// Errors on a low-order point or one that is not on the curve.
    pub(super) fn prepare(&self) -> Result<(), &'static str> {
        self.check
    }
}

impl age::Recipient for X25519Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        self.check.map_err(refused)?;
        self.inner.wrap_file_key(file_key)
    }
}

/// An `ssh-ed25519 …` recipient.
#[derive(Clone)]
pub(super) struct SshEd25519Recipient {
    check: Result<(), &'static str>,
    inner: age::ssh::Recipient,
}

impl SshEd25519Recipient {
    /// From the ssh wire-format public key and its decompressed point.
    pub(super) fn new(wire: Vec<u8>, point: EdwardsPoint) -> Self {
        let check = if point.is_small_order() {
            Err(LOW_ORDER)
        } else {
            Ok(())
        };
        SshEd25519Recipient {
            check,
            inner: age::ssh::Recipient::SshEd25519(wire, point),
        }
    }

    /// Errors on a low-order point.
    pub(super) fn prepare(&self) -> Result<(), &'static str> {
        self.check
    }
}

impl age::Recipient for SshEd25519Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        self.check.map_err(refused)?;
        self.inner.wrap_file_key(file_key)
    }
}

/// An X25519 identity (`AGE-SECRET-KEY-1…`): the age crate's.
#[derive(Clone)]
pub(super) struct X25519Identity(age::x25519::Identity);

impl X25519Identity {
    /// The age crate's `identity`.
    pub(super) fn new(identity: &age::x25519::Identity) -> Self {
        X25519Identity(identity.clone())
    }
}

impl age::Identity for X25519Identity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        self.0.unwrap_stanza(stanza)
    }
    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, DecryptError>> {
        self.0.unwrap_stanzas(stanzas)
    }
}
