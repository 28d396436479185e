//! age's `X25519` and `ssh-ed25519` stanzas, computed on the Edwards form of Curve25519.
//!
//! The age crate computes each X25519 function with x25519-dalek's Montgomery ladder: one per
//! `X25519` stanza it wraps, two per `ssh-ed25519` stanza, and for every stanza it unwraps one
//! more fixed-base multiplication to recompute its own public key. Re-encrypting a fleet is
//! mostly that arithmetic. This module writes and reads the very same stanzas (age's formats,
//! age-core's HKDF and ChaCha20-Poly1305) with cheaper operations curve25519-dalek offers,
//! all constant-time in the secret scalars:
//!
//! - a recipient's point is decompressed once, when it is first used, and a shared secret is
//!   one Edwards multiplication (vectorised on AVX2) instead of a ladder;
//! - the two X25519 functions of an `ssh-ed25519` stanza become one, by multiplying scalars;
//! - the vault identity's public key is computed once.
//!
//! Why this is exact for every point on the curve, not only for honest keys: for a point `P`
//! and a clamped scalar `k` (a multiple of 8 below 2^255), `X25519(k, u(P)) = u([k]P)`. `[8]P`
//! lies in the subgroup of prime order `ℓ`, where scalars act modulo `ℓ`, so
//! `[k]P = [k/8]([8]P) = [k · 8⁻¹ mod ℓ]([8]P)`. An `ssh-ed25519` stanza computes
//! `X25519(t, X25519(e, u(P))) = u([t·e]P) = u([t · e · 8⁻¹ mod ℓ]([8]P))`. Both `P` and `-P`
//! have the same `u`, so either lift of `u` gives the same result. A `u` with no point on the
//! curve (a point of the twist: no honest key or ephemeral share) goes through the ladder, as in
//! age. The tests compare every path with x25519-dalek and with the age crate.

use std::collections::HashSet;
use std::io;
use std::sync::{LazyLock, OnceLock};

use age::{DecryptError, EncryptError};
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, aead_encrypt, hkdf};
use age_core::secrecy::ExposeSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use curve25519_dalek::scalar::clamp_integer;
use curve25519_dalek::traits::IsIdentity as _;
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint, Scalar};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

const X25519_TAG: &str = "X25519";
const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const SSH_ED25519_TAG: &str = "ssh-ed25519";
const SSH_ED25519_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";
/// A wrapped file key: the key and ChaCha20-Poly1305's tag.
const WRAPPED_KEY_BYTES: usize = FILE_KEY_BYTES + 16;

/// 8⁻¹ mod ℓ.
static INVERSE_OF_EIGHT: LazyLock<Scalar> = LazyLock::new(|| Scalar::from(8u8).invert());

/// `clamp(k) · 8⁻¹ mod ℓ`: the scalar that multiplies `[8]P` as X25519 with `k` multiplies `P`.
fn cofactor_free(k: &[u8; 32]) -> Zeroizing<Scalar> {
    Zeroizing::new(Scalar::from_bytes_mod_order(clamp_integer(*k)) * *INVERSE_OF_EIGHT)
}

/// `[8]P` for a public point `P`, or `None` when every multiple of `P` is the identity (a
/// low-order point: whatever is encrypted to it, anyone can decrypt).
fn cleared(point: EdwardsPoint) -> Option<EdwardsPoint> {
    let cleared = point.mul_by_cofactor();
    (!cleared.is_identity()).then_some(cleared)
}

const LOW_ORDER: &str = "the key is a low-order point of Curve25519, which no private key protects";

fn low_order(reason: &'static str) -> EncryptError {
    EncryptError::Io(io::Error::other(reason))
}

/// A fresh ephemeral X25519 key: its secret scalar and its public share.
struct Ephemeral {
    secret: Zeroizing<[u8; 32]>,
    share: [u8; 32],
}

impl Ephemeral {
    fn new() -> Result<Self, EncryptError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut secret[..]).map_err(|e| {
            EncryptError::Io(io::Error::other(format!(
                "the operating system's random generator failed: {e}"
            )))
        })?;
        let share = EdwardsPoint::mul_base_clamped(*secret)
            .to_montgomery()
            .to_bytes();
        Ok(Ephemeral { secret, share })
    }
}

/// The stanza `-> tag args… share`, whose body is the file key under ChaCha20-Poly1305 keyed
/// with HKDF-SHA-256(shared secret, salt = ephemeral share ‖ recipient, info = `label`).
fn stanza(
    tag: &str,
    mut args: Vec<String>,
    label: &[u8],
    shared: &MontgomeryPoint,
    ephemeral: &Ephemeral,
    recipient: &MontgomeryPoint,
    file_key: &FileKey,
) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
    if bool::from(shared.ct_eq(&MontgomeryPoint([0; 32]))) {
        return Err(low_order(LOW_ORDER));
    }
    let key = Zeroizing::new(hkdf(
        &salt(&ephemeral.share, recipient),
        label,
        shared.as_bytes(),
    ));
    args.push(STANDARD_NO_PAD.encode(ephemeral.share));
    let stanza = Stanza {
        tag: tag.to_owned(),
        args,
        body: aead_encrypt(&key, file_key.expose_secret()),
    };
    Ok((vec![stanza], HashSet::new()))
}

fn salt(share: &[u8; 32], recipient: &MontgomeryPoint) -> [u8; 64] {
    let mut salt = [0; 64];
    salt[..32].copy_from_slice(share);
    salt[32..].copy_from_slice(recipient.as_bytes());
    salt
}

/// An `age1…` recipient.
#[derive(Clone)]
pub(super) struct X25519Recipient {
    public: MontgomeryPoint,
    /// `[8]P` for the point `P` with this `u`, or `None` when `u` is on the twist; computed on
    /// first use, so that parsing every recipient of a fleet stays cheap.
    point: OnceLock<Result<Option<EdwardsPoint>, &'static str>>,
}

impl X25519Recipient {
    /// From the 32 bytes of the public key.
    pub(super) fn new(public: [u8; 32]) -> Self {
        X25519Recipient {
            public: MontgomeryPoint(public),
            point: OnceLock::new(),
        }
    }

    /// Get ready to wrap file keys; errors on a low-order point.
    pub(super) fn prepare(&self) -> Result<(), &'static str> {
        self.prepared().map(|_| ())
    }

    fn prepared(&self) -> Result<Option<&EdwardsPoint>, &'static str> {
        self.point
            .get_or_init(|| match self.public.to_edwards(0) {
                Some(p) => cleared(p).map(Some).ok_or(LOW_ORDER),
                None => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(|e| *e)
    }

    /// `X25519(k, public)`.
    fn shared_secret(&self, k: &[u8; 32]) -> Result<Zeroizing<MontgomeryPoint>, EncryptError> {
        Ok(Zeroizing::new(
            match self.prepared().map_err(low_order)? {
                Some(point) => (point * *cofactor_free(k)).to_montgomery(),
                None => self.public.mul_clamped(*k),
            },
        ))
    }
}

impl age::Recipient for X25519Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        let ephemeral = Ephemeral::new()?;
        let shared = self.shared_secret(&ephemeral.secret)?;
        stanza(
            X25519_TAG,
            Vec::new(),
            X25519_LABEL,
            &shared,
            &ephemeral,
            &self.public,
            file_key,
        )
    }
}

/// An `ssh-ed25519 …` recipient.
#[derive(Clone)]
pub(super) struct SshEd25519Recipient {
    /// The ssh wire-format public key.
    wire: Vec<u8>,
    /// Its Ed25519 point.
    point: EdwardsPoint,
    /// What wrapping needs, computed on first use.
    prepared: OnceLock<Result<SshPrepared, &'static str>>,
}

#[derive(Clone)]
struct SshPrepared {
    /// The stanza's first argument: the first 4 bytes of SHA-256 of the wire-format key.
    tag: String,
    /// The Ed25519 point converted to Montgomery form (the salt's second half).
    public: MontgomeryPoint,
    /// `[8]P` for the Ed25519 point `P`.
    point: EdwardsPoint,
    /// `clamp(tweak) · 8⁻¹ mod ℓ`, where age's tweak is HKDF(salt = the wire-format key).
    tweak: Zeroizing<Scalar>,
}

impl SshEd25519Recipient {
    /// From the ssh wire-format public key and its decompressed point (as the age crate parses
    /// them).
    pub(super) fn new(wire: Vec<u8>, point: EdwardsPoint) -> Self {
        SshEd25519Recipient {
            wire,
            point,
            prepared: OnceLock::new(),
        }
    }

    /// Get ready to wrap file keys; errors on a low-order point.
    pub(super) fn prepare(&self) -> Result<(), &'static str> {
        self.prepared().map(|_| ())
    }

    fn prepared(&self) -> Result<&SshPrepared, &'static str> {
        use sha2::Digest as _;
        self.prepared
            .get_or_init(|| {
                let tweak = Zeroizing::new(hkdf(&self.wire, SSH_ED25519_LABEL, &[]));
                Ok(SshPrepared {
                    tag: STANDARD_NO_PAD.encode(&sha2::Sha256::digest(&self.wire)[..4]),
                    public: self.point.to_montgomery(),
                    point: cleared(self.point).ok_or(LOW_ORDER)?,
                    tweak: cofactor_free(&tweak),
                })
            })
            .as_ref()
            .map_err(|e| *e)
    }
}

impl age::Recipient for SshEd25519Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        let prepared = self.prepared().map_err(low_order)?;
        let ephemeral = Ephemeral::new()?;
        // X25519(tweak, X25519(e, P)) as one multiplication by clamp(e) · clamp(tweak).
        let scalar = Zeroizing::new(
            Scalar::from_bytes_mod_order(clamp_integer(*ephemeral.secret)) * *prepared.tweak,
        );
        let shared = Zeroizing::new((prepared.point * *scalar).to_montgomery());
        stanza(
            SSH_ED25519_TAG,
            vec![prepared.tag.clone()],
            SSH_ED25519_LABEL,
            &shared,
            &ephemeral,
            &prepared.public,
            file_key,
        )
    }
}

/// An X25519 identity (`AGE-SECRET-KEY-1…`) that unwraps `X25519` stanzas.
#[derive(Clone)]
pub(super) struct X25519Identity {
    secret: Zeroizing<[u8; 32]>,
    public: MontgomeryPoint,
}

impl X25519Identity {
    /// From the 32 bytes of the secret key.
    pub(super) fn new(secret: Zeroizing<[u8; 32]>) -> Self {
        let public = EdwardsPoint::mul_base_clamped(*secret).to_montgomery();
        X25519Identity { secret, public }
    }

    /// `X25519(secret, share)`.
    fn shared_secret(&self, share: &MontgomeryPoint) -> Zeroizing<MontgomeryPoint> {
        Zeroizing::new(match share.to_edwards(0) {
            Some(point) => point.mul_clamped(*self.secret).to_montgomery(),
            None => share.mul_clamped(*self.secret),
        })
    }
}

impl age::Identity for X25519Identity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != X25519_TAG {
            return None;
        }
        let [arg] = &stanza.args[..] else {
            return Some(Err(DecryptError::InvalidHeader));
        };
        let Some(share) = decode_share(arg) else {
            return Some(Err(DecryptError::InvalidHeader));
        };
        if stanza.body.len() != WRAPPED_KEY_BYTES {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let shared = self.shared_secret(&MontgomeryPoint(share));
        if bool::from(shared.ct_eq(&MontgomeryPoint([0; 32]))) {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let key = Zeroizing::new(hkdf(
            &salt(&share, &self.public),
            X25519_LABEL,
            shared.as_bytes(),
        ));
        let plain = Zeroizing::new(aead_decrypt(&key, FILE_KEY_BYTES, &stanza.body).ok()?);
        Some(Ok(FileKey::init_with_mut(|file_key| {
            file_key.copy_from_slice(&plain)
        })))
    }
}

/// A stanza's ephemeral share: exactly 32 bytes of canonical unpadded base64, as age requires.
fn decode_share(arg: &str) -> Option<[u8; 32]> {
    let mut buf = [0u8; 33];
    match STANDARD_NO_PAD.decode_slice(arg, &mut buf) {
        Ok(32) => Some(buf[..32].try_into().expect("32 bytes")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {

    use age::secrecy::ExposeSecret as _;
    use age::{Identity as _, Recipient as _};
    use proptest::prelude::*;

    use super::*;

    /// X25519 as the age crate computes it: x25519-dalek's ladder, `MontgomeryPoint::mul_clamped`.
    fn ladder(k: [u8; 32], u: [u8; 32]) -> [u8; 32] {
        MontgomeryPoint(u).mul_clamped(k).to_bytes()
    }

    /// `u`-coordinates of low-order points and of points on the twist, canonical and not, and
    /// with the top bit (which X25519 ignores) set: the inputs where a shortcut would most
    /// likely differ from the ladder.
    fn special_points() -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        let from_hex = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
        for h in [
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0100000000000000000000000000000000000000000000000000000000000000",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
            "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
            "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
            "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
            "d9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "dbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        ] {
            out.push(from_hex(h));
        }
        // Points on the twist: u = 2 is not on the curve.
        out.push({
            let mut u = [0u8; 32];
            u[0] = 2;
            u
        });
        out
    }

    fn on_curve(u: [u8; 32]) -> bool {
        MontgomeryPoint(u).to_edwards(0).is_some()
    }

    #[test]
    fn unwrap_shared_secret_equals_the_ladder_on_special_points() {
        for u in special_points() {
            for k in [[0u8; 32], [0xff; 32], [7; 32], [0x42; 32]] {
                let id = X25519Identity::new(Zeroizing::new(k));
                assert_eq!(
                    id.shared_secret(&MontgomeryPoint(u)).to_bytes(),
                    ladder(k, u),
                    "u = {}",
                    hex::encode(u)
                );
            }
        }
    }

    #[test]
    fn low_order_recipients_are_refused() {
        let mut refused = 0;
        for u in special_points() {
            let low = ladder([0x42; 32], u) == [0; 32] && ladder([0x17; 32], u) == [0; 32];
            let r = X25519Recipient::new(u);
            match r.prepare() {
                Err(_) => {
                    assert!(low, "{} was refused", hex::encode(u));
                    refused += 1;
                }
                // A low-order point of the twist: refused when wrapping instead.
                Ok(_) if low => assert!(!on_curve(u)),
                Ok(_) => assert_eq!(
                    r.shared_secret(&[9; 32]).unwrap().to_bytes(),
                    ladder([9; 32], u)
                ),
            }
            if low {
                assert!(r.wrap_file_key(&FileKey::new(Box::new([1; 16]))).is_err());
            }
        }
        assert_eq!(refused, 8, "the low-order points of the curve in the list");
    }

    const SSH_KEY: &str = include_str!("../../testdata/keys/darwin2/hosts/air13");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn shared_secrets_equal_the_ladder(k: [u8; 32], p: [u8; 32], q: [u8; 32]) {
            // An honest public key [p]B, and an arbitrary u (on the curve or its twist).
            let public = MontgomeryPoint::mul_base_clamped(p).to_bytes();
            for u in [public, q] {
                if let Ok(shared) = X25519Recipient::new(u).shared_secret(&k) {
                    prop_assert_eq!(shared.to_bytes(), ladder(k, u));
                }
                let id = X25519Identity::new(Zeroizing::new(k));
                prop_assert_eq!(id.shared_secret(&MontgomeryPoint(u)).to_bytes(), ladder(k, u));
            }
        }

        #[test]
        fn x25519_stanzas_interoperate_with_the_age_crate(key: [u8; 16]) {
            let file_key = || FileKey::new(Box::new(key));
            let theirs = age::x25519::Identity::generate();
            let ours = X25519Identity::new(super::super::secret_bytes(&theirs).unwrap());
            let public = super::super::bech32_bytes(&theirs.to_public().to_string()).unwrap();
            prop_assert_eq!(*public, ours.public.to_bytes());
            let recipient = X25519Recipient::new(ours.public.to_bytes());
            // Our stanza, their identity.
            let (stanzas, labels) = recipient.wrap_file_key(&file_key()).unwrap();
            prop_assert!(labels.is_empty());
            let unwrapped = theirs.unwrap_stanzas(&stanzas).unwrap().unwrap();
            prop_assert_eq!(unwrapped.expose_secret(), &key);
            // Their stanza, our identity.
            let (stanzas, _) = theirs.to_public().wrap_file_key(&file_key()).unwrap();
            let unwrapped = ours.unwrap_stanzas(&stanzas).unwrap().unwrap();
            prop_assert_eq!(unwrapped.expose_secret(), &key);
        }

        #[test]
        fn ssh_stanzas_unwrap_with_the_age_crate(key: [u8; 16]) {
            let identity =
                age::ssh::Identity::from_buffer(SSH_KEY.as_bytes(), None).unwrap();
            let theirs = age::ssh::Recipient::try_from(identity.clone()).unwrap();
            let age::ssh::Recipient::SshEd25519(wire, point) = &theirs else {
                panic!("an ed25519 key");
            };
            let ours = SshEd25519Recipient::new(wire.clone(), *point);
            let (stanzas, _) = ours.wrap_file_key(&FileKey::new(Box::new(key))).unwrap();
            let (reference, _) = theirs.wrap_file_key(&FileKey::new(Box::new(key))).unwrap();
            prop_assert_eq!(&stanzas[0].tag, &reference[0].tag);
            prop_assert_eq!(&stanzas[0].args[0], &reference[0].args[0]);
            let unwrapped = identity.unwrap_stanzas(&stanzas).unwrap().unwrap();
            prop_assert_eq!(unwrapped.expose_secret(), &key);
        }
    }

    #[test]
    fn a_wrong_identity_or_a_damaged_stanza_is_not_a_match() {
        let ours = X25519Identity::new(Zeroizing::new([3; 32]));
        let other = X25519Recipient::new(
            X25519Identity::new(Zeroizing::new([4; 32]))
                .public
                .to_bytes(),
        );
        let (stanzas, _) = other
            .wrap_file_key(&FileKey::new(Box::new([5; 16])))
            .unwrap();
        assert!(ours.unwrap_stanzas(&stanzas).is_none());
        let copy = |s: &Stanza| Stanza {
            tag: s.tag.clone(),
            args: s.args.clone(),
            body: s.body.clone(),
        };
        let mut bad = copy(&stanzas[0]);
        bad.args[0].push('A');
        assert!(matches!(
            ours.unwrap_stanza(&bad),
            Some(Err(DecryptError::InvalidHeader))
        ));
        let mut short = copy(&stanzas[0]);
        short.body.pop();
        assert!(matches!(
            ours.unwrap_stanza(&short),
            Some(Err(DecryptError::InvalidHeader))
        ));
    }
}
