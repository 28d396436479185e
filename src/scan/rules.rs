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

mod encoded;

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

/// The largest PEM block looked at (an RSA-16384 key is ~12 KiB; PGP blocks with subkeys
/// more).
const PEM_CAP: usize = 256 * 1024;

/// The bytes from `from` up to `cap` bytes on, or up to the next `next` (a BEGIN line of the
/// same kind: a key's body never holds one). So every byte is searched for the body of one
/// header only, and a file of repeated headers costs as much as reading it once (review 2,
/// finding 8: each header searched 256 KiB again, minutes for a few MiB).
fn until_next<'a>(bytes: &'a [u8], from: usize, cap: usize, next: &[u8]) -> &'a [u8] {
    let window = &bytes[from..bytes.len().min(from.saturating_add(cap))];
    match memchr::memmem::find(window, next) {
        Some(i) => &window[..i],
        None => window,
    }
}

fn pem_at(m: &Matchers, bytes: &[u8], at: usize) -> Option<Hit> {
    let window = &bytes[at..bytes.len().min(at + 200)];
    let caps = m.pem_begin.captures(window)?;
    let header_end = at + caps.get(0)?.end();
    let label = std::str::from_utf8(caps.get(1)?.as_bytes()).ok()?;
    let block = caps.get(2).is_some();
    let end_marker = format!(
        "-----END {label}PRIVATE KEY{}-----",
        if block { " BLOCK" } else { "" }
    );
    let search = until_next(bytes, header_end, PEM_CAP, b"-----BEGIN");
    let (body, end, min) = match memchr::memmem::find(search, end_marker.as_bytes()) {
        Some(i) => (&search[..i], header_end + i + end_marker.len(), 64),
        // A key cut short (pasted half, or the END line lost) is still key material, but
        // then the body alone must be long.
        None => (search, header_end, 256),
    };
    looks_like_key_body(body, min)?;
    let kind = match label.trim_end() {
        "" => "PKCS#8 private key".to_owned(),
        "ENCRYPTED" => {
            "encrypted PKCS#8 private key (a passphrase does not make it safe to publish)"
                .to_owned()
        }
        "RSA" => "RSA private key".to_owned(),
        "EC" => "EC private key".to_owned(),
        "DSA" => "DSA private key".to_owned(),
        "OPENSSH" => "OpenSSH private key".to_owned(),
        "PGP" => "PGP private key block".to_owned(),
        other => format!("{other} private key"),
    };
    let end = if end == header_end {
        header_end + body.len().min(PEM_CAP)
    } else {
        end
    };
    Some(Hit {
        rule: Rule::PrivateKey,
        start: at,
        end,
        message: format!("{kind} in plaintext").into(),
        fingerprint_text: bytes[at..end].to_vec(),
    })
}

/// `Some(())` when `body` (what lies between a BEGIN and an END line) is key material: base64
/// lines (after unwrapping quotes, `\n` escapes, indentation and comment marks) with at least
/// `min` base64 characters of some variety, and little else. `Key: value` header lines
/// (`Proc-Type`, `DEK-Info`, `Comment`, PGP's `Version`) are allowed. A key whose newlines
/// became spaces (`echo $(cat key)`) is one line of base64 tokens: see [`spaced_tokens`].
fn looks_like_key_body(body: &[u8], min: usize) -> Option<()> {
    let mut b64 = 0usize;
    let mut other = 0usize;
    let mut seen = [false; 128];
    let mut digits = |t: &[u8]| {
        for &c in t {
            seen[c as usize] = true;
        }
        t.len()
    };
    for line in unwrapped_lines(body) {
        if line.is_empty() {
            continue;
        }
        if is_base64_line(line) {
            b64 += digits(line);
        } else if let Some((header, tokens)) = spaced_tokens(line) {
            other += header;
            b64 += tokens.map(&mut digits).sum::<usize>();
        } else if is_header_line(line) {
            continue;
        } else {
            other += line.len();
        }
    }
    let variety = seen.iter().filter(|s| **s).count();
    (b64 >= min && variety >= 20 && other * 4 < b64).then_some(())
}

fn is_base64_line(line: &[u8]) -> bool {
    line.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
}

/// A key's lines joined with spaces or tabs (`echo $(cat key)`, a value pasted into one
/// line): the bytes of the header words before the base64 (`Proc-Type: 4,ENCRYPTED …`) and the
/// base64 tokens, when every token but the last is a base64 line of the same length, at least
/// 40 (64 in PEM, 70 in OpenSSH), and the last no longer. Prose between a BEGIN and an END
/// line has shorter words.
fn spaced_tokens(line: &[u8]) -> Option<(usize, impl Iterator<Item = &[u8]>)> {
    let tokens = || {
        line.split(|c| matches!(c, b' ' | b'\t'))
            .filter(|t| !t.is_empty())
    };
    let header = tokens().take_while(|t| !is_base64_line(t)).count();
    let header_len = tokens().take(header).map(<[u8]>::len).sum();
    let mut body = tokens().skip(header).peekable();
    let width = body.peek()?.len();
    let mut n = 0;
    let mut last = 0;
    for t in body {
        if !is_base64_line(t) || (n > 0 && last != width) || t.len() > width {
            return None;
        }
        last = t.len();
        n += 1;
    }
    (n >= 2 && width >= 40).then(|| (header_len, tokens().skip(header)))
}

fn is_header_line(line: &[u8]) -> bool {
    match memchr::memchr(b':', line) {
        Some(i) if i > 0 => line[..i]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-'),
        _ => false,
    }
}

/// Lines of `text` with the wrapping around key lines removed: real newlines and `\n` / `\r`
/// escapes (any number of backslashes) split lines; quotes, commas, `;`, backslashes, YAML/Nix
/// indentation, quote and comment marks (`#`, `//`, `*`, `>`, `|`, `--`, `%`) and `+`
/// concatenation are trimmed from both ends (see [`trim_wrapping`]).
fn unwrapped_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut i = 0;
        let (line, next) = loop {
            if i >= rest.len() {
                break (rest, &rest[rest.len()..]);
            }
            match rest[i] {
                b'\n' | b'\r' => break (&rest[..i], &rest[i + 1..]),
                b'\\' => {
                    let mut j = i;
                    while j < rest.len() && rest[j] == b'\\' {
                        j += 1;
                    }
                    if j < rest.len() && matches!(rest[j], b'n' | b'r') {
                        break (&rest[..i], &rest[j + 1..]);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        };
        rest = next;
        Some(trim_wrapping(line))
    })
}

/// `line` without the syntax around a base64 run: quotes, commas, `;`, backslashes, `#`, `*`,
/// backticks, whitespace, and the prefixes of a Markdown or e-mail quote (`> `), a Markdown
/// table cell (`| … |`), an SQL or Lua comment (`-- `, also a YAML list's `- `) and a TeX,
/// Erlang or MATLAB comment (`% `) always; `+` and `/` (string concatenation, `//` and `*/` comment
/// marks) only where such syntax or the line's edge separates them from the run, since both
/// are base64 too. Trimming a final `/` or `+` that belongs to the run made every ed25519 and
/// X25519 PKCS#8 key whose body (exactly 64 characters, the minimum) ends in one of them pass
/// unseen, about 1 in 32 (review 2, finding 2).
fn trim_wrapping(line: &[u8]) -> &[u8] {
    let syntax = |c: &u8| {
        c.is_ascii_whitespace()
            || matches!(
                c,
                b'"' | b'\'' | b',' | b';' | b'\\' | b'#' | b'*' | b'`' | b'>' | b'|' | b'%' | b'-'
            )
    };
    let op = |c: &u8| matches!(c, b'+' | b'/');
    // Each end on its own, each step taking something off or stopping: linear in the line.
    let mut start = 0;
    loop {
        start += line[start..].iter().take_while(|c| syntax(c)).count();
        let ops = line[start..].iter().take_while(|c| op(c)).count();
        if ops == 0 || line.get(start + ops).is_some_and(|c| !syntax(c)) {
            break;
        }
        start += ops;
    }
    let mut end = line.len();
    loop {
        end -= line[start..end]
            .iter()
            .rev()
            .take_while(|c| syntax(c))
            .count();
        let ops = line[start..end].iter().rev().take_while(|c| op(c)).count();
        if ops == 0 || (end - ops > start && !syntax(&line[end - ops - 1])) {
            break;
        }
        end -= ops;
    }
    &line[start..end]
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
