//! ZeroTier identities (type 0, Curve25519), made the way `zerotier-idtool generate` makes them,
//! for the shipped `zerotier-*` generators (issue 14): `zerotier-idtool` is not packaged in
//! Debian, and a ZeroTier address cannot be computed with shell and openssl in reasonable time.
//!
//! An identity is an X25519 key and an Ed25519 key. Its 40-bit address is the last five bytes of
//! a memory-hard hash of the two public keys (SHA-512, then 2 MiB of Salsa20/20 output mixed
//! sequentially), and only keys whose hash starts with a byte below 17 are accepted (hashcash:
//! about 15 tries, each ~50 ms). Every peer checks this before it talks to a node, so an
//! identity with a random address does not work. The unit tests check the hash against ZeroTier's
//! own known-good identity and the Salsa20 core against ZeroTier's Salsa20/20 test vector.
//!
//! No I/O here; `vars zerotier-identity` (hidden, used by the generators' scripts inside the
//! sandbox) writes the files.

use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
use sha2::{Digest as _, Sha512};
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// 32-bit words of Salsa20 output the address hash fills and mixes (2 MiB).
const GEN_WORDS: usize = 2 * 1024 * 1024 / 4;
/// An identity is valid only when the first byte of its hash is below this.
const FIRST_BYTE_LESS_THAN: u8 = 17;

/// A freshly generated identity with its private keys.
pub struct Identity {
    /// The 40-bit ZeroTier address (node id).
    pub address: u64,
    /// X25519 public key followed by the Ed25519 public key.
    pub public: [u8; 64],
    secret: Zeroizing<[u8; 64]>,
}

impl Identity {
    /// A new random identity (hashcash search; takes about a second).
    pub fn generate() -> Result<Identity, getrandom::Error> {
        let mut secret = Zeroizing::new([0u8; 64]);
        let mut genmem = vec![0u32; GEN_WORDS];
        loop {
            getrandom::fill(&mut secret[..])?;
            let public = public_keys(&secret);
            if let Some(address) = address_of(&public, &mut genmem) {
                return Ok(Identity {
                    address,
                    public,
                    secret,
                });
            }
        }
    }

    /// `identity.public`: `<address>:0:<public keys, hex>`.
    pub fn public_string(&self) -> String {
        format!("{:010x}:0:{}", self.address, hex::encode(self.public))
    }

    /// `identity.secret`: the public string and `:<private keys, hex>`.
    pub fn secret_string(&self) -> SecretBytes {
        let mut s = Zeroizing::new(self.public_string());
        s.push(':');
        s.push_str(&Zeroizing::new(hex::encode(&self.secret[..])));
        SecretBytes::new(s.as_bytes().to_vec())
    }
}

/// Whether `text` (an `identity.secret` or `identity.public` line) is a valid type-0 identity:
/// its address is the hash of its public keys, and its private keys (if given) belong to them.
/// What ZeroTier's `locallyValidate` checks, plus the key pairs.
pub fn validate(text: &str) -> bool {
    let fields: Vec<&str> = text.trim_end().split(':').collect();
    if !(3..=4).contains(&fields.len()) || fields[1] != "0" || fields[0].len() != 10 {
        return false;
    }
    let Ok(address) = u64::from_str_radix(fields[0], 16) else {
        return false;
    };
    let mut public = [0u8; 64];
    if hex::decode_to_slice(fields[2], &mut public).is_err() {
        return false;
    }
    if let Some(private) = fields.get(3) {
        let mut secret = Zeroizing::new([0u8; 64]);
        if hex::decode_to_slice(private, &mut secret[..]).is_err() || public_keys(&secret) != public
        {
            return false;
        }
    }
    let mut genmem = vec![0u32; GEN_WORDS];
    address_of(&public, &mut genmem) == Some(address)
}

/// The public keys of a private key pair: X25519 of bytes 0..32, Ed25519 of seed 32..64.
fn public_keys(secret: &[u8; 64]) -> [u8; 64] {
    let mut dh = [0u8; 32];
    dh.copy_from_slice(&secret[..32]);
    let dh = Zeroizing::new(dh);
    let expanded = Zeroizing::new(Sha512::digest(&secret[32..]));
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&expanded[..32]);
    let mut public = [0u8; 64];
    public[..32].copy_from_slice(&MontgomeryPoint::mul_base_clamped(*dh).to_bytes());
    public[32..].copy_from_slice(
        EdwardsPoint::mul_base_clamped(*scalar)
            .compress()
            .as_bytes(),
    );
    public
}

/// The address of `public`, or `None` when its hash fails the hashcash condition or the
/// address is reserved (0, or starting with 0xff).
fn address_of(public: &[u8; 64], genmem: &mut [u32]) -> Option<u64> {
    let digest = memory_hard_hash(public, genmem);
    if digest[0] >= FIRST_BYTE_LESS_THAN {
        return None;
    }
    let address = digest[59..64]
        .iter()
        .fold(0u64, |a, b| (a << 8) | u64::from(*b));
    (address != 0 && address >> 32 != 0xff).then_some(address)
}

/// ZeroTier's memory-hard hash: SHA-512 of the public keys keys a Salsa20/20 stream that
/// fills 2 MiB block by block (each block encrypts a copy of the previous one), then 131,072
/// rounds each swap a word of the digest with a word of that memory chosen by the memory itself
/// and re-encrypt the digest. The memory is kept as little-endian `u32` words, the layout
/// Salsa20 works in, so the hash is fast enough even in a debug build (the test suite's).
fn memory_hard_hash(public: &[u8; 64], genmem: &mut [u32]) -> [u8; 64] {
    let digest: [u8; 64] = Sha512::digest(public).into();
    let mut s20 = Salsa20::new(&digest[..32], &digest[32..40]);
    let mut d = [0u32; 16];
    for (w, b) in d.iter_mut().zip(digest.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    genmem.fill(0);
    s20.xor_block(&mut genmem[..16]);
    for i in (16..genmem.len()).step_by(16) {
        genmem.copy_within(i - 16..i, i);
        s20.xor_block(&mut genmem[i..i + 16]);
    }
    // A 64-bit word of the memory read big-endian (ZeroTier's ntoh of a uint64_t).
    let be = |lo: u32, hi: u32| u64::from(lo.swap_bytes()) << 32 | u64::from(hi.swap_bytes());
    let words = (genmem.len() / 2) as u64;
    for i in (0..genmem.len()).step_by(4) {
        let idx1 = (be(genmem[i], genmem[i + 1]) % 8) as usize * 2;
        let idx2 = (be(genmem[i + 2], genmem[i + 3]) % words) as usize * 2;
        std::mem::swap(&mut genmem[idx2], &mut d[idx1]);
        std::mem::swap(&mut genmem[idx2 + 1], &mut d[idx1 + 1]);
        s20.xor_block(&mut d);
    }
    let mut out = [0u8; 64];
    for (b, w) in out.chunks_exact_mut(4).zip(d) {
        b.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Salsa20 with 20 rounds, a 64-bit nonce and a 64-bit block counter from 0, one 64-byte
/// block (16 little-endian words) at a time: all the hash needs.
struct Salsa20 {
    state: [u32; 16],
}

impl Salsa20 {
    fn new(key: &[u8], nonce: &[u8]) -> Self {
        let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let k = |i: usize| word(key, 4 * i);
        let n = |i: usize| word(nonce, 4 * i);
        // "expand 32-byte k"
        let c = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
        let state = [
            c[0],
            k(0),
            k(1),
            k(2),
            k(3),
            c[1],
            n(0),
            n(1),
            0,
            0,
            c[2],
            k(4),
            k(5),
            k(6),
            k(7),
            c[3],
        ];
        Salsa20 { state }
    }

    /// XOR the next keystream block into `block`.
    fn xor_block(&mut self, block: &mut [u32]) {
        let [
            mut x0,
            mut x1,
            mut x2,
            mut x3,
            mut x4,
            mut x5,
            mut x6,
            mut x7,
        ] = [0, 1, 2, 3, 4, 5, 6, 7].map(|i| self.state[i]);
        let [
            mut x8,
            mut x9,
            mut x10,
            mut x11,
            mut x12,
            mut x13,
            mut x14,
            mut x15,
        ] = [8, 9, 10, 11, 12, 13, 14, 15].map(|i| self.state[i]);
        // Local variables, not an indexed array: no bounds checks in the hot loop.
        macro_rules! quarter {
            ($a:ident, $b:ident, $c:ident, $d:ident) => {
                $b ^= $a.wrapping_add($d).rotate_left(7);
                $c ^= $b.wrapping_add($a).rotate_left(9);
                $d ^= $c.wrapping_add($b).rotate_left(13);
                $a ^= $d.wrapping_add($c).rotate_left(18);
            };
        }
        for _ in 0..10 {
            quarter!(x0, x4, x8, x12);
            quarter!(x5, x9, x13, x1);
            quarter!(x10, x14, x2, x6);
            quarter!(x15, x3, x7, x11);
            quarter!(x0, x1, x2, x3);
            quarter!(x5, x6, x7, x4);
            quarter!(x10, x11, x8, x9);
            quarter!(x15, x12, x13, x14);
        }
        let x = [
            x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
        ];
        for ((b, x), s) in block.iter_mut().zip(x).zip(self.state) {
            *b ^= x.wrapping_add(s);
        }
        let counter = (u64::from(self.state[9]) << 32 | u64::from(self.state[8])).wrapping_add(1);
        self.state[8] = counter as u32;
        self.state[9] = (counter >> 32) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From ZeroTier One's selftest.cpp (KNOWN_GOOD_IDENTITY).
    const KNOWN_GOOD: &str = "8e4df28b72:0:ac3d46abe0c21f3cfe7a6c8d6a85cfcffcb82fbd55af6a4d6350657c68200843fa2e16f9418bbd9702cae365f2af5fb4c420908b803a681d4daef6114d78a2d7:bd8dd6e4ce7022d2f812797a80c6ee8ad180dc4ebf301dec8b06d1be08832bddd63a2f1cfa7b2c504474c75bdc8898ba476ef92e8e2d0509f8441985171ff16e";

    #[test]
    fn salsa20_is_zerotiers_salsa20_20() {
        let key: [u8; 32] =
            hex::decode("0f62b5085bae0154a7fa4da0f34699ec3f92e5388bde3184d72a7dd02376c91c")
                .unwrap()
                .try_into()
                .unwrap();
        let nonce: [u8; 8] = hex::decode("288ff65dc42b92f9").unwrap().try_into().unwrap();
        let mut block = [0u32; 16];
        Salsa20::new(&key, &nonce).xor_block(&mut block);
        let bytes: Vec<u8> = block.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(
            hex::encode(bytes),
            "5e5e71f90199340304abb22a37b6625bf883fb89ce3b21f54a10b81066ef87da\
             30b77699aa7379da595c77dd59542da208e5954f89e40eb7aa80a84a6176663f"
        );
    }

    #[test]
    fn known_good_identity_validates_and_a_changed_one_does_not() {
        assert!(validate(KNOWN_GOOD));
        // KNOWN_BAD_IDENTITY: the same keys with another address.
        assert!(!validate(&KNOWN_GOOD.replacen("8e4df", "9e4df", 1)));
        // The public half alone validates; a private key of other keys does not.
        let public: String = KNOWN_GOOD.rsplit_once(':').unwrap().0.to_owned();
        assert!(validate(&public));
        let flipped = format!("{public}:{}", "00".repeat(64));
        assert!(!validate(&flipped));
        assert!(!validate("8e4df28b72:1:00"));
        assert!(!validate(""));
    }

    #[test]
    fn generated_identities_validate() {
        let id = Identity::generate().unwrap();
        let secret = String::from_utf8(id.secret_string().expose().to_vec()).unwrap();
        assert!(validate(&secret));
        assert!(validate(&id.public_string()));
        assert!(secret.starts_with(&id.public_string()));
        assert_ne!(id.address >> 32, 0xff);
    }
}
