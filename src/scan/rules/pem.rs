//! PEM blocks: a BEGIN line, then a body that must look like a key's (base64 lines of some
//! length and variety, or the same collapsed onto one line), in whatever wrapping the text is
//! in (YAML and Nix strings, JSON `\n` escapes, quotes, comment and table prefixes).

use super::{Hit, Matchers, Rule};

/// The largest PEM block looked at (an RSA-16384 key is ~12 KiB; PGP blocks with subkeys
/// more).
pub(super) const PEM_CAP: usize = 256 * 1024;

/// The bytes from `from` up to `cap` bytes on, or up to the next `next` (a BEGIN line of the
/// same kind: a key's body never holds one). So every byte is searched for the body of one
/// header only, and a file of repeated headers costs as much as reading it once (review 2,
/// finding 8: each header searched 256 KiB again, minutes for a few MiB).
pub(super) fn until_next<'a>(bytes: &'a [u8], from: usize, cap: usize, next: &[u8]) -> &'a [u8] {
    let window = &bytes[from..bytes.len().min(from.saturating_add(cap))];
    match memchr::memmem::find(window, next) {
        Some(i) => &window[..i],
        None => window,
    }
}

pub(super) fn pem_at(m: &Matchers, bytes: &[u8], at: usize) -> Option<Hit> {
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
pub(super) fn looks_like_key_body(body: &[u8], min: usize) -> Option<()> {
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

pub(super) fn is_base64_line(line: &[u8]) -> bool {
    line.iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
}

/// A key's lines joined with spaces or tabs (`echo $(cat key)`, a value pasted into one
/// line): the bytes of the header words before the base64 (`Proc-Type: 4,ENCRYPTED …`) and the
/// base64 tokens, when every token but the last is a base64 line of the same length, at least
/// 40 (64 in PEM, 70 in OpenSSH), and the last no longer. Prose between a BEGIN and an END
/// line has shorter words.
pub(super) fn spaced_tokens(line: &[u8]) -> Option<(usize, impl Iterator<Item = &[u8]>)> {
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

pub(super) fn is_header_line(line: &[u8]) -> bool {
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
pub(super) fn unwrapped_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
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
pub(super) fn trim_wrapping(line: &[u8]) -> &[u8] {
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
