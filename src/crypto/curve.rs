//! age's `X25519` and `ssh-ed25519` stanzas, computed on the Edwards form of Curve25519 (the
//! `fast-x25519` cargo feature, on by default; without it [`super::ladder`] hands the same work
//! to the age crate's own arithmetic).
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
//! - the vault identity's public key and scalar are computed once.
//!
//! Why this is exact for every point on the curve, not only for honest keys: for a point `P`
//! and a clamped scalar `k` (a multiple of 8 below 2^255), `X25519(k, u(P)) = u([k]P)`. `[8]P`
//! lies in the subgroup of prime order `ℓ`, where scalars act modulo `ℓ`, so
//! `[k]P = [k/8]([8]P) = [k · 8⁻¹ mod ℓ]([8]P)`. An `ssh-ed25519` stanza computes
//! `X25519(t, X25519(e, u(P))) = u([t·e]P) = u([t · e · 8⁻¹ mod ℓ]([8]P))`. Both `P` and `-P`
//! have the same `u`, so either lift of `u` gives the same result. A share with no point on the
//! curve (a point of the twist: no honest ephemeral share is one) goes through the ladder, as in
//! age; a recipient that is not a point of the curve, or of low order, is refused before
//! anything is encrypted to it (no private key protects it). The tests in [`super::proofs`]
//! compare every path with x25519-dalek, the Wycheproof vectors and the age crate.
//!
//! Secret scalars are held in [`Zeroizing`] values and multiplied by reference. The one copy
//! left outside them is the argument of curve25519-dalek's ladder (`mul_clamped` takes the
//! scalar by value), used only for a crafted share on the twist.

use std::collections::HashSet;
use std::io;
use std::sync::{LazyLock, OnceLock};

use age::{DecryptError, EncryptError};
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, aead_encrypt, hkdf};
use age_core::secrecy::ExposeSecret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use curve25519_dalek::traits::IsIdentity as _;
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint, Scalar};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::{
    LOW_ORDER, NOT_ON_CURVE, SSH_ED25519_LABEL, SSH_ED25519_TAG, WRAPPED_KEY_BYTES, X25519_LABEL,
    X25519_TAG, decode_share, salt,
};

/// 8⁻¹ mod ℓ.
static INVERSE_OF_EIGHT: LazyLock<Scalar> = LazyLock::new(|| Scalar::from(8u8).invert());

/// `clamp(k) mod ℓ`, computed without copies of `k` outside zeroizing buffers.
fn clamped(k: &[u8; 32]) -> Zeroizing<Scalar> {
    let mut wide = Zeroizing::new([0u8; 64]);
    wide[..32].copy_from_slice(k);
    wide[0] &= 248;
    wide[31] &= 127;
    wide[31] |= 64;
    Zeroizing::new(Scalar::from_bytes_mod_order_wide(&wide))
}

/// `clamp(k) · 8⁻¹ mod ℓ`: the scalar that multiplies `[8]P` as X25519 with `k` multiplies `P`.
fn cofactor_free(k: &[u8; 32]) -> Zeroizing<Scalar> {
    let mut s = clamped(k);
    *s *= &*INVERSE_OF_EIGHT;
    s
}

/// `u([s]Q)` for a point `Q` of the prime-order subgroup.
fn shared_u(q: &EdwardsPoint, s: &Scalar) -> Zeroizing<MontgomeryPoint> {
    let product = Zeroizing::new(q * s);
    Zeroizing::new(product.to_montgomery())
}

/// `[8]P` for a public point `P`, or `None` when every multiple of `P` is the identity (a
/// low-order point: whatever is encrypted to it, anyone can decrypt).
fn cleared(point: &EdwardsPoint) -> Option<EdwardsPoint> {
    let cleared = point.mul_by_cofactor();
    (!cleared.is_identity()).then_some(cleared)
}

fn refused(reason: &'static str) -> EncryptError {
    EncryptError::Io(io::Error::other(reason))
}

/// A fresh ephemeral X25519 key: its clamped secret scalar (mod ℓ) and its public share.
struct Ephemeral {
    scalar: Zeroizing<Scalar>,
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
        // [clamp(e)]B = [clamp(e) mod ℓ]B: the base point has order ℓ.
        let scalar = clamped(&secret);
        let share = EdwardsPoint::mul_base(&scalar).to_montgomery().to_bytes();
        Ok(Ephemeral { scalar, share })
    }
}

/// The stanza `-> tag args… share`, whose body is the file key under ChaCha20-Poly1305 keyed
/// with HKDF-SHA-256(shared secret, salt = ephemeral share ‖ recipient, info = `label`).
fn stanza(
    tag: &str,
    mut args: Vec<String>,
    label: &[u8],
    shared: &MontgomeryPoint,
    share: &[u8; 32],
    recipient: &MontgomeryPoint,
    file_key: &FileKey,
) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
    if bool::from(shared.ct_eq(&MontgomeryPoint([0; 32]))) {
        return Err(refused(LOW_ORDER));
    }
    let key = Zeroizing::new(hkdf(
        &salt(share, recipient.as_bytes()),
        label,
        shared.as_bytes(),
    ));
    args.push(STANDARD_NO_PAD.encode(share));
    let stanza = Stanza {
        tag: tag.to_owned(),
        args,
        body: aead_encrypt(&key, file_key.expose_secret()),
    };
    Ok((vec![stanza], HashSet::new()))
}

/// An `age1…` recipient.
#[derive(Clone)]
pub(super) struct X25519Recipient {
    public: MontgomeryPoint,
    /// `[8]P` for the point `P` with this `u`; computed on first use, so that parsing every
    /// recipient of a fleet stays cheap.
    point: OnceLock<Result<EdwardsPoint, &'static str>>,
}

impl X25519Recipient {
    /// From the 32 bytes of the public key (and the age crate's parse of it, which
    /// [`super::ladder`] uses).
    pub(super) fn new(public: [u8; 32], _: age::x25519::Recipient) -> Self {
        X25519Recipient {
            public: MontgomeryPoint(public),
            point: OnceLock::new(),
        }
    }

    /// Get ready to wrap file keys; errors on a low-order point or one that is not on the curve.
    pub(super) fn prepare(&self) -> Result<(), &'static str> {
        self.prepared().map(|_| ())
    }

    fn prepared(&self) -> Result<&EdwardsPoint, &'static str> {
        self.point
            .get_or_init(|| match self.public.to_edwards(0) {
                Some(p) => cleared(&p).ok_or(LOW_ORDER),
                None => Err(NOT_ON_CURVE),
            })
            .as_ref()
            .map_err(|e| *e)
    }

    /// `X25519(e, public)` for an ephemeral scalar `e` (clamped, mod ℓ).
    fn shared_secret(&self, e: &Scalar) -> Result<Zeroizing<MontgomeryPoint>, EncryptError> {
        let point = self.prepared().map_err(refused)?;
        let mut s = Zeroizing::new(*e);
        *s *= &*INVERSE_OF_EIGHT;
        Ok(shared_u(point, &s))
    }
}

impl age::Recipient for X25519Recipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, HashSet<String>), EncryptError> {
        let ephemeral = Ephemeral::new()?;
        let shared = self.shared_secret(&ephemeral.scalar)?;
        stanza(
            X25519_TAG,
            Vec::new(),
            X25519_LABEL,
            &shared,
            &ephemeral.share,
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
                    point: cleared(&self.point).ok_or(LOW_ORDER)?,
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
        let prepared = self.prepared().map_err(refused)?;
        let ephemeral = Ephemeral::new()?;
        // X25519(tweak, X25519(e, P)) as one multiplication by clamp(e) · clamp(tweak) / 8.
        let mut scalar = Zeroizing::new(*ephemeral.scalar);
        *scalar *= &*prepared.tweak;
        let shared = shared_u(&prepared.point, &scalar);
        stanza(
            SSH_ED25519_TAG,
            vec![prepared.tag.clone()],
            SSH_ED25519_LABEL,
            &shared,
            &ephemeral.share,
            &prepared.public,
            file_key,
        )
    }
}

/// An X25519 identity (`AGE-SECRET-KEY-1…`) that unwraps `X25519` stanzas.
#[derive(Clone)]
pub(super) struct X25519Identity {
    /// The secret key's bytes, for the ladder (a share on the twist).
    secret: Zeroizing<[u8; 32]>,
    /// `clamp(secret) · 8⁻¹ mod ℓ`, for shares on the curve.
    scalar: Zeroizing<Scalar>,
    public: MontgomeryPoint,
}

impl X25519Identity {
    /// The same key as the age crate's `identity`.
    pub(super) fn new(identity: &age::x25519::Identity) -> Self {
        let secret = super::secret_bytes(identity).expect("an age identity is 32 bytes of bech32");
        let public = EdwardsPoint::mul_base(&clamped(&secret)).to_montgomery();
        X25519Identity {
            scalar: cofactor_free(&secret),
            secret,
            public,
        }
    }

    /// `X25519(secret, share)`.
    pub(super) fn shared_secret(&self, share: &MontgomeryPoint) -> Zeroizing<MontgomeryPoint> {
        match share.to_edwards(0) {
            Some(point) => shared_u(&point.mul_by_cofactor(), &self.scalar),
            // Only a crafted share is on the twist; the result is the ladder's, as in age.
            None => Zeroizing::new(share.mul_clamped(*self.secret)),
        }
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
            &salt(&share, self.public.as_bytes()),
            X25519_LABEL,
            shared.as_bytes(),
        ));
        let plain = Zeroizing::new(aead_decrypt(&key, FILE_KEY_BYTES, &stanza.body).ok()?);
        Some(Ok(FileKey::init_with_mut(|file_key| {
            file_key.copy_from_slice(&plain)
        })))
    }
}

#[cfg(test)]
mod tests {
    //! The Edwards shortcuts against the ladder on the inputs where a shortcut would most likely
    //! differ; the Wycheproof vectors and the bounded differential tests against x25519-dalek,
    //! which run with and without this module, are in [`super::super::proofs`].

    use age::Recipient as _;
    use proptest::prelude::*;

    use super::super::proofs::{ladder, special_points};
    use super::*;

    fn on_curve(u: [u8; 32]) -> bool {
        MontgomeryPoint(u).to_edwards(0).is_some()
    }

    fn identity(k: [u8; 32]) -> X25519Identity {
        let text = age_core::primitives::bech32_encode(
            bech32::Hrp::parse_unchecked("age-secret-key-"),
            &k,
        )
        .to_uppercase();
        X25519Identity::new(&text.parse().unwrap())
    }

    #[test]
    fn unwrap_shared_secret_equals_the_ladder_on_special_points() {
        for u in special_points() {
            for k in [[0u8; 32], [0xff; 32], [7; 32], [0x42; 32]] {
                assert_eq!(
                    identity(k).shared_secret(&MontgomeryPoint(u)).to_bytes(),
                    ladder(k, u),
                    "u = {}",
                    hex::encode(u)
                );
            }
        }
    }

    #[test]
    fn low_order_and_twist_recipients_are_refused() {
        let mut low_on_curve = 0;
        for u in special_points() {
            let low = ladder([0x42; 32], u) == [0; 32] && ladder([0x17; 32], u) == [0; 32];
            let r = X25519Recipient::new(u, dummy());
            match r.prepare() {
                Err(reason) if on_curve(u) => {
                    assert!(low, "{} was refused", hex::encode(u));
                    assert_eq!(reason, LOW_ORDER);
                    low_on_curve += 1;
                }
                Err(reason) => assert_eq!(reason, NOT_ON_CURVE, "{}", hex::encode(u)),
                Ok(()) => {
                    assert!(!low && on_curve(u), "{} was accepted", hex::encode(u));
                    let e = clamped(&[9; 32]);
                    assert_eq!(r.shared_secret(&e).unwrap().to_bytes(), ladder([9; 32], u));
                }
            }
            if low {
                assert!(r.wrap_file_key(&FileKey::new(Box::new([1; 16]))).is_err());
            }
        }
        assert_eq!(
            low_on_curve, 8,
            "the low-order points of the curve in the list"
        );
    }

    /// Any well-formed recipient text: the parse is only used without `fast-x25519`.
    fn dummy() -> age::x25519::Recipient {
        age::x25519::Identity::generate().to_public()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn shared_secrets_equal_the_ladder(k: [u8; 32], p: [u8; 32], q: [u8; 32]) {
            // An honest public key [p]B, and an arbitrary u (on the curve or its twist).
            let public = MontgomeryPoint::mul_base_clamped(p).to_bytes();
            let recipient = X25519Recipient::new(public, dummy());
            let shared = recipient.shared_secret(&clamped(&k)).unwrap();
            prop_assert_eq!(shared.to_bytes(), ladder(k, public));
            for u in [public, q] {
                let shared = identity(k).shared_secret(&MontgomeryPoint(u));
                prop_assert_eq!(shared.to_bytes(), ladder(k, u));
            }
        }
    }
}
