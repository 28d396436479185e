//! The rule catalogue of `vars scan` and the content rules: plaintext key material in any
//! file, in whatever wrapping it leaked in (a PEM block in a YAML block string, a Nix `''`
//! string, a JSON string with `\n` escapes, base64 in a Kubernetes secret).
//!
//! One Aho-Corasick pass over each file finds the literal keywords (`-----BEGIN`,
//! `AGE-SECRET-KEY-`, `PrivateKey`, …); only at a hit does a rule look closer, with an anchored
//! regex on a bounded window and a structural check that tells a key from a document that
//! mentions one: a PEM body must be base64 lines of some length and variety, an age identity
//! must pass its bech32 checksum, a Nix signing key must hold an ed25519 seed and its own public
//! key. The store rules are in `scan/store.rs`; [`crate::model::AllowRule`] and inline
//! `vars:allow` marks set false positives aside.

use std::borrow::Cow;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::Regex;

use super::Rule;
use super::bech32::bech32_valid;
use encoded::base64_at;
use pem::{PEM_CAP, looks_like_key_body, pem_at, until_next};

mod encoded;
mod pem;

/// One match of a content rule in a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The rule.
    pub rule: Rule,
    /// Byte offset of the first byte of the match.
    pub start: usize,
    /// Byte offset just past the match.
    pub end: usize,
    /// What was found (names a kind, never content); mostly a constant, which a file of
    /// 700,000 matches does not copy 700,000 times.
    pub message: Cow<'static, str>,
    /// The bytes the fingerprint hashes: the match itself, or for low-entropy values (a
    /// password) the text around the value, so the fingerprint does not allow guessing it.
    pub fingerprint_text: Vec<u8>,
}

/// Files bigger than this are skipped (and counted), DESIGN §6's output cap.
pub const DEFAULT_MAX_SIZE: u64 = 16 * 1024 * 1024;

/// A NUL byte in this many leading bytes makes a file binary (git's heuristic).
const BINARY_PROBE: usize = 8000;

/// Whether `bytes` look binary.
pub fn is_binary(bytes: &[u8]) -> bool {
    memchr::memchr(0, &bytes[..bytes.len().min(BINARY_PROBE)]).is_some()
}

/// The rules that look at a path alone.
pub fn path_rule(path: &str) -> Option<Hit> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    (name.ends_with(".p12") || name.ends_with(".pfx")).then(|| Hit {
        rule: Rule::Pkcs12File,
        start: 0,
        end: 0,
        message: "PKCS#12 files hold a private key".into(),
        fingerprint_text: Vec::new(),
    })
}

/// The keywords of the prefilter and the rule each one wakes.
const KEYWORDS: &[(&str, Kind)] = &[
    ("-----BEGIN", Kind::Pem),
    ("LS0tLS1CRUdJTi", Kind::Base64),
    ("QUdFLVNFQ1JFVC1LRVkt", Kind::Base64),
    ("FHRS1TRUNSRVQtS0VZL", Kind::Base64),
    ("BR0UtU0VDUkVULUtFWS", Kind::Base64),
    ("IyBjcmVhdGVkOi", Kind::Base64),
    ("b3BlbnNzaC1rZXktdjE", Kind::Base64),
    ("---- BEGIN SSH2", Kind::Ssh2),
    ("PuTTY-User-Key-File-", Kind::Putty),
    ("AGE-SECRET-KEY-", Kind::Age),
    ("privatekey", Kind::Wireguard),
    ("private_key", Kind::Wireguard),
    ("private-key", Kind::Wireguard),
    ("presharedkey", Kind::Wireguard),
    ("preshared_key", Kind::Wireguard),
    ("preshared-key", Kind::Wireguard),
    ("password", Kind::Password),
    ("==", Kind::NixKey),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pem,
    Base64,
    Ssh2,
    Putty,
    Age,
    Wireguard,
    Password,
    NixKey,
}

struct Matchers {
    keywords: AhoCorasick,
    pem_begin: Regex,
    putty: Regex,
    age: Regex,
    wireguard: Regex,
    nix_password: Regex,
    password_hash: Regex,
}

static MATCHERS: LazyLock<Matchers> = LazyLock::new(|| {
    let re = |s: &str| Regex::new(s).expect("the rule regexes are valid");
    Matchers {
        keywords: AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(KEYWORDS.iter().map(|(k, _)| k))
            .expect("the keywords build an automaton"),
        pem_begin: re(r"^-----BEGIN ([A-Z0-9 _-]{0,100}?)PRIVATE KEY( BLOCK)?-----"),
        putty: re(r"^PuTTY-User-Key-File-[23]: [a-z0-9@.-]+"),
        age: re(r"^(?i)AGE-SECRET-KEY-(?:PQ-)?1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58,400}"),
        wireguard: re(
            r#"^(?i)(?:private|preshared)[_-]?key\\*["']?[ \t]*[:=][ \t]*\\*["']?([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)"#,
        ),
        nix_password: re(
            r#"(?:^|[^A-Za-z0-9_'-])((?:[A-Za-z0-9_.'-]*\.)?(?:initialPassword|password))\s*=\s*"([^"\\]|\\.)+"\s*;"#,
        ),
        password_hash: re(
            r#"(?:initialHashedPassword|hashedPassword)["']?\s*[=:]\s*["']\$(?:y|gy|7|2[aby]|5|6)\$[^"'\s]{20,}["']"#,
        ),
    }
});

/// Every content-rule match in `bytes` (a text file at `path`), in order of position.
pub fn scan_content(path: &str, bytes: &[u8]) -> Vec<Hit> {
    let m = &*MATCHERS;
    let nix_file = path.ends_with(".nix");
    let mut hits: Vec<Hit> = Vec::new();
    // Where the last PEM-like block ended: keywords inside it belong to it.
    let mut covered = 0usize;
    // The work stays linear in the file's size however often a keyword repeats: each rule
    // that looks further than a fixed window stops at the next keyword of its own kind (PEM,
    // SSH2, PuTTY), or remembers how far it has looked (a base64 run is decoded once, a line
    // is judged for passwords once).
    let mut base64_done = 0usize;
    let mut line_done = 0usize;
    for k in m.keywords.find_iter(bytes) {
        let at = k.start();
        if at < covered {
            continue;
        }
        let kind = KEYWORDS[k.pattern().as_usize()].1;
        let hit = match kind {
            Kind::Pem => pem_at(m, bytes, at),
            Kind::Base64 => {
                if at >= base64_done {
                    let found = hits.len();
                    base64_done = base64_at(m, bytes, at, base64_done, &mut hits);
                    if hits.len() > found {
                        covered = covered.max(base64_done);
                    }
                }
                continue;
            }
            Kind::Ssh2 => ssh2_at(bytes, at),
            Kind::Putty => putty_at(m, bytes, at),
            Kind::Age => age_at(m, bytes, at),
            Kind::Wireguard => wireguard_at(m, bytes, at),
            Kind::NixKey => nix_key_at(bytes, at),
            Kind::Password => {
                if at < line_done {
                    continue;
                }
                let (ls, le) = line_bounds(bytes, at);
                line_done = le + 1;
                password_in_line(m, bytes, ls, le, nix_file, &mut hits);
                continue;
            }
        };
        if let Some(h) = hit {
            covered = covered.max(h.end);
            hits.push(h);
        }
    }
    if let Some(h) = bare_wireguard_file(path, bytes) {
        hits.push(h);
    }
    hits.sort_by_key(|h| (h.start, h.rule));
    hits.dedup_by_key(|h| (h.start, h.rule));
    hits
}

fn ssh2_at(bytes: &[u8], at: usize) -> Option<Hit> {
    const BEGIN: &[u8] = b"---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----";
    const END: &[u8] = b"---- END SSH2 ENCRYPTED PRIVATE KEY ----";
    if !bytes[at..].starts_with(BEGIN) {
        return None;
    }
    let from = at + BEGIN.len();
    let search = until_next(bytes, from, PEM_CAP, b"---- BEGIN SSH2");
    let i = memchr::memmem::find(search, END)?;
    looks_like_key_body(&search[..i], 64)?;
    let end = from + i + END.len();
    Some(Hit {
        rule: Rule::Ssh2PrivateKey,
        start: at,
        end,
        message: "SSH2-format private key in plaintext (\"ENCRYPTED\" is in every such header)"
            .into(),
        fingerprint_text: bytes[at..end].to_vec(),
    })
}

fn putty_at(m: &Matchers, bytes: &[u8], at: usize) -> Option<Hit> {
    let window = &bytes[at..bytes.len().min(at + 200)];
    m.putty.find(window)?;
    // A .ppk always carries Private-Lines (before the next key's header); a document quoting
    // the first line does not.
    const HEADER: &[u8] = b"PuTTY-User-Key-File-";
    let rest = until_next(bytes, at + HEADER.len(), 64 * 1024, HEADER);
    let p = memchr::memmem::find(rest, b"Private-Lines: ")?;
    let after = &rest[p + 15..];
    let digits = after.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let end = at + HEADER.len() + p + 15 + digits;
    Some(Hit {
        rule: Rule::PuttyPrivateKey,
        start: at,
        end,
        message: "PuTTY private key file".into(),
        // The key's own lines: the 64 KiB after it were copied for every key of a file.
        fingerprint_text: bytes[at..end].to_vec(),
    })
}

fn age_at(m: &Matchers, bytes: &[u8], at: usize) -> Option<Hit> {
    let window = &bytes[at..bytes.len().min(at + 420)];
    let found = m.age.find(window)?;
    let end = at + found.end();
    if bytes.get(end).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let text = &bytes[at..end];
    let valid = std::str::from_utf8(text).is_ok_and(bech32_valid);
    Some(if valid {
        Hit {
            rule: Rule::AgeIdentity,
            start: at,
            end,
            message: "age identity (private key) in plaintext".into(),
            fingerprint_text: text.to_vec(),
        }
    } else {
        Hit {
            rule: Rule::AgeIdentityPlaceholder,
            start: at,
            end,
            message: "looks like an age identity, but its checksum fails: a placeholder?".into(),
            fingerprint_text: text.to_vec(),
        }
    })
}

fn wireguard_at(m: &Matchers, bytes: &[u8], at: usize) -> Option<Hit> {
    let window = &bytes[at..bytes.len().min(at + 200)];
    let caps = m.wireguard.captures(window)?;
    let value = caps.get(1)?;
    let end = at + value.end();
    if bytes
        .get(end)
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    {
        return None;
    }
    let preshared = window[..3].eq_ignore_ascii_case(b"pre");
    Some(Hit {
        rule: Rule::WireguardPrivateKey,
        start: at,
        end,
        message: if preshared {
            "WireGuard preshared key in plaintext".into()
        } else {
            "WireGuard private key in plaintext".into()
        },
        fingerprint_text: bytes[at + value.start()..end].to_vec(),
    })
}

/// A file whose whole content is one WireGuard key and whose name says private (`wg genkey >
/// private.key`). Public keys look the same, so the name decides.
fn bare_wireguard_file(path: &str, bytes: &[u8]) -> Option<Hit> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if !(name.contains("priv") || name.contains("secret") || name.contains("psk")) {
        return None;
    }
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let ok = text.len() == 44
        && text[..42]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        && b"AEIMQUYcgkosw048".contains(&text[42])
        && text[43] == b'=';
    ok.then(|| Hit {
        rule: Rule::WireguardPrivateKey,
        start: 0,
        end: 44,
        message: "WireGuard private key file (its name says private)".into(),
        fingerprint_text: text.to_vec(),
    })
}

/// `name:<base64 of 64 bytes>` where the 64 bytes are an ed25519 seed followed by its own
/// public key: exactly what `nix-store --generate-binary-cache-key` writes. The check makes
/// other base64 that happens to follow a colon harmless.
fn nix_key_at(bytes: &[u8], at: usize) -> Option<Hit> {
    use base64::Engine as _;
    const B64: usize = 86;
    if at < B64 + 2 {
        return None;
    }
    let body_start = at - B64;
    let body = &bytes[body_start..at];
    if !body
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
        || bytes[body_start - 1] != b':'
    {
        return None;
    }
    if bytes
        .get(at + 2)
        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
    {
        return None;
    }
    let name_end = body_start - 1;
    let name_len = bytes[..name_end]
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        .count();
    if name_len == 0 {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&bytes[body_start..at + 2])
        .ok()?;
    let seed: [u8; 32] = decoded.get(..32)?.try_into().ok()?;
    if !ed25519_public_matches(&seed, decoded.get(32..64)?) {
        return None;
    }
    let start = name_end - name_len;
    Some(Hit {
        rule: Rule::NixSigningKey,
        start,
        end: at + 2,
        message: "Nix binary cache signing key (an ed25519 secret key) in plaintext".into(),
        fingerprint_text: bytes[start..at + 2].to_vec(),
    })
}

fn ed25519_public_matches(seed: &[u8; 32], public: &[u8]) -> bool {
    use sha2::Digest as _;
    let h = sha2::Sha512::digest(seed);
    let scalar: [u8; 32] = h[..32].try_into().expect("sha512 is 64 bytes");
    let point = curve25519_dalek::EdwardsPoint::mul_base_clamped(scalar);
    point.compress().as_bytes() == public
}

fn password_in_line(
    m: &Matchers,
    bytes: &[u8],
    ls: usize,
    le: usize,
    nix_file: bool,
    hits: &mut Vec<Hit>,
) {
    let line = &bytes[ls..le];
    if let Some(found) = m.password_hash.find(line) {
        hits.push(Hit {
            rule: Rule::PasswordHash,
            start: ls + found.start(),
            end: ls + found.end(),
            message: "crypt(3) password hash in a configuration file".into(),
            fingerprint_text: found.as_bytes().to_vec(),
        });
    }
    if !nix_file {
        return;
    }
    for caps in m.nix_password.captures_iter(line) {
        let whole = caps.get(0).expect("group 0 is the match");
        let name = caps.get(1).expect("the name group always matches");
        if memchr::memmem::find(whole.as_bytes(), b"${").is_some() {
            // An interpolation (`"${secret}"`) is not a literal password.
            continue;
        }
        hits.push(Hit {
            rule: Rule::NixPlaintextPassword,
            start: ls + name.start(),
            end: ls + whole.end(),
            message: "plaintext password in a Nix configuration (world-readable in /nix/store)"
                .into(),
            // The option's name, not its value: a hash of a password allows guessing it.
            fingerprint_text: name.as_bytes().to_vec(),
        });
    }
}

/// The line (without its newline) that contains byte `at`.
pub fn line_bounds(bytes: &[u8], at: usize) -> (usize, usize) {
    let start = memchr::memrchr(b'\n', &bytes[..at]).map_or(0, |i| i + 1);
    let end = memchr::memchr(b'\n', &bytes[at..]).map_or(bytes.len(), |i| at + i);
    (start, end)
}

#[cfg(test)]
mod tests;
