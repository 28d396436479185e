//! Base64 in a file: a run followed over the lines that continue it, decoded at each
//! alignment its keywords have, and searched for what the plaintext rules find (PEM keys, age
//! identities) and for an OpenSSH key's binary body. A Kubernetes `Secret`'s `data:`, a Helm
//! value, `base64 id_ed25519` wrapped at 76 columns, `SSH_KEY=b3BlbnNzaC1rZXktdjE…`.

use super::{Hit, Matchers, Rule, age_at, pem_at};

/// The base64 alphabet (without the padding `=`).
fn is_base64(c: &u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/')
}

/// The base64 keywords of [`super::KEYWORDS`] and where each starts in its 4-character quantum:
/// `-----BEGIN` at any alignment is found by the first (the others of its alignments are what
/// a PEM block after other bytes encodes to; the decoded run is searched anyway); the next
/// three are `AGE-SECRET-KEY-` at the three byte alignments (the characters that hold its
/// bytes only), the last `# created: `, the first line `age-keygen` writes, which wakes the
/// rule for a wrapped identity file whose `AGE-SECRET-KEY-` encoding a line break splits;
/// then `openssh-key-v1\0`, the start of an OpenSSH key's body (`SSH_KEY=<body>` without its
/// BEGIN and END lines).
const BASE64_KEYS: &[(&[u8], usize)] = &[
    (b"LS0tLS1CRUdJTi", 0),
    (b"QUdFLVNFQ1JFVC1LRVkt", 0),
    (b"FHRS1TRUNSRVQtS0VZL", 2),
    (b"BR0UtU0VDUkVULUtFWS", 3),
    (b"IyBjcmVhdGVkOi", 0),
    (b"b3BlbnNzaC1rZXktdjE", 0),
];

/// The base64 run around `at`, over line breaks: (the file ranges of its pieces, their
/// digits joined). A run goes on at the next line when it reaches the end of its line (no
/// `=`) and the next line, after its indentation (spaces, tabs: a YAML block scalar), starts
/// with a base64 digit: what `base64`, `openssl base64` and MIME write. It does not reach back
/// before `floor`.
fn base64_run(bytes: &[u8], at: usize, floor: usize) -> (Vec<(usize, usize)>, Vec<u8>) {
    let back = |to: usize| {
        to - bytes[floor..to]
            .iter()
            .rev()
            .take_while(|c| is_base64(c))
            .count()
    };
    let forth = |from: usize| from + bytes[from..].iter().take_while(|c| is_base64(c)).count();
    let mut start = back(at);
    let mut pieces = vec![(start, forth(at))];
    // Backwards: only indentation before the piece on its line, the line above ending in a
    // digit.
    loop {
        let indent = bytes[floor..start]
            .iter()
            .rev()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        let mut nl = start - indent;
        if nl <= floor || bytes[nl - 1] != b'\n' {
            break;
        }
        nl -= 1;
        if nl > floor && bytes[nl - 1] == b'\r' {
            nl -= 1;
        }
        if nl <= floor || !is_base64(&bytes[nl - 1]) {
            break;
        }
        start = back(nl);
        pieces.push((start, nl));
    }
    pieces[1..].reverse();
    pieces.rotate_left(1);
    // Forwards.
    loop {
        let end = pieces.last().expect("one piece at least").1;
        let mut next = end;
        if bytes.get(next) == Some(&b'\r') {
            next += 1;
        }
        if bytes.get(next) != Some(&b'\n') {
            break;
        }
        next += 1;
        next += bytes[next..]
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        if !bytes.get(next).is_some_and(is_base64) {
            break;
        }
        pieces.push((next, forth(next)));
    }
    let mut joined = Vec::with_capacity(pieces.iter().map(|(s, e)| e - s).sum());
    for &(s, e) in &pieces {
        joined.extend_from_slice(&bytes[s..e]);
    }
    (pieces, joined)
}

/// Base64 of a PEM block or an age identity file (a Kubernetes `Secret`'s `data:`, a Helm
/// value, `base64 id_ed25519` wrapped at 76 columns). The base64 run around `at` (see
/// [`base64_run`]; not reaching back before `floor`, where the last run looked at ended) is
/// decoded once per alignment its keywords have (at most four times) and searched for PEM
/// keys and age identities, which are pushed to `hits`; returns where the run ends, so the
/// other keywords in it are not decoded again (review 2, finding 8: each occurrence decoded
/// up to 341 KiB, 21 s per MiB of them).
pub(super) fn base64_at(
    m: &Matchers,
    bytes: &[u8],
    at: usize,
    floor: usize,
    hits: &mut Vec<Hit>,
) -> usize {
    let (pieces, run) = base64_run(bytes, at, floor);
    let digits_end = pieces.last().expect("one piece at least").1;
    let run_end = digits_end
        + bytes[digits_end..]
            .iter()
            .take(2)
            .take_while(|c| **c == b'=')
            .count();
    // Where the digit `j` of the run is in the file: in the last piece starting at or
    // before it (a binary search, as a run of many lines may hold many keys).
    let firsts: Vec<usize> = pieces
        .iter()
        .scan(0, |j, &(s, e)| {
            let first = *j;
            *j += e - s;
            Some(first)
        })
        .collect();
    let file_at = |j: usize| {
        let i = firsts.partition_point(|&f| f <= j) - 1;
        pieces[i].0 + (j - firsts[i])
    };
    // A block inside a base64 run (of a whole file holding a key) starts a multiple of four
    // characters into the run; one pasted after other base64 text may not: the run is
    // decoded at each alignment a keyword has. The keywords matched without regard to case:
    // a lowercase one decodes to nothing, and none is decoded.
    let mut aligned = [false; 4];
    for &(key, offset) in BASE64_KEYS {
        for p in memchr::memmem::find_iter(&run, key) {
            if p >= offset {
                aligned[(p - offset) % 4] = true;
            }
        }
    }
    for (a, _) in aligned.iter().enumerate().filter(|(_, on)| **on) {
        let Some(decoded) = decode_base64(&run[a..]) else {
            continue;
        };
        let mut found = Vec::new();
        let mut d = 0;
        while let Some(i) = memchr::memmem::find(&decoded[d..], b"-----BEGIN") {
            d += i;
            match pem_at(m, &decoded, d) {
                Some(inner) => {
                    d = inner.end;
                    found.push(inner);
                }
                None => d += 1,
            }
        }
        let mut d = 0;
        while let Some(i) = memchr::memmem::find(&decoded[d..], b"AGE-SECRET-KEY-") {
            d += i;
            match age_at(m, &decoded, d) {
                Some(inner) => {
                    d = inner.end;
                    found.push(inner);
                }
                None => d += 1,
            }
        }
        let mut d = 0;
        while let Some(i) = memchr::memmem::find(&decoded[d..], OPENSSH_MAGIC) {
            d += i;
            match openssh_blob_end(&decoded, d) {
                Some(end) => {
                    found.push(Hit {
                        rule: Rule::PrivateKey,
                        start: d,
                        end,
                        message: "OpenSSH private key body (without its BEGIN and END lines)"
                            .into(),
                        fingerprint_text: Vec::new(),
                    });
                    d = end;
                }
                None => d += 1,
            }
        }
        for inner in found {
            // Where the key's first and last bytes are encoded, in the file.
            let start = file_at(a + inner.start / 3 * 4);
            let last = (a + inner.end.div_ceil(3) * 4).min(run.len());
            let end = file_at(last - 1) + 1;
            hits.push(Hit {
                rule: inner.rule,
                start,
                end,
                message: format!("base64-encoded {}", inner.message).into(),
                fingerprint_text: bytes[start..end].to_vec(),
            });
        }
    }
    run_end
}

/// The magic an OpenSSH private key's binary body starts with (PROTOCOL.key).
const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// Where the OpenSSH private key body at `at` in `blob` ends, when it is one whole: cipher,
/// KDF and its options, a key count of 1 to 16, that many public keys and the private
/// section, every length inside `blob`. A document quoting the first characters every such
/// key shares does not hold the private section.
fn openssh_blob_end(blob: &[u8], at: usize) -> Option<usize> {
    let mut p = at + OPENSSH_MAGIC.len();
    let u32_at = |p: &mut usize| -> Option<usize> {
        let n = u32::from_be_bytes(blob.get(*p..*p + 4)?.try_into().ok()?);
        *p += 4;
        usize::try_from(n).ok()
    };
    let string = |p: &mut usize| -> Option<usize> {
        let n = u32_at(p)?;
        let end = p.checked_add(n)?;
        blob.get(*p..end)?;
        *p = end;
        Some(n)
    };
    let cipher_start = p + 4;
    let cipher = string(&mut p)?;
    if cipher == 0 || cipher > 64 || !blob[cipher_start..p].iter().all(u8::is_ascii_graphic) {
        return None;
    }
    string(&mut p)?;
    string(&mut p)?;
    let keys = u32_at(&mut p)?;
    if !(1..=16).contains(&keys) {
        return None;
    }
    for _ in 0..keys {
        (string(&mut p)? > 0).then_some(())?;
    }
    (string(&mut p)? >= 32).then_some(p)
}

/// Base64 digits (no padding) decoded, a final quantum cut short or not.
fn decode_base64(digits: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    // 4n + 1 digits hold a character that completes no byte.
    let usable = digits.len() - usize::from(digits.len() % 4 == 1);
    LENIENT.decode(&digits[..usable]).ok()
}
