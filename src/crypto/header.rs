//! Reading the recipient stanzas of an age header without decrypting anything, for `vars check`
//! (which needs no identity) and the crash tests.

use std::io::Read as _;

use super::CryptoError;

/// One recipient stanza of an age header, as `check` sees it without decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// The stanza type: `X25519`, `ssh-ed25519`, `ssh-rsa`, or a plugin's tag.
    pub kind: String,
    /// The first argument (for ssh stanzas, the key tag).
    pub first_arg: Option<String>,
}

/// Read the recipient stanzas of an age file's header (binary or armored), without decrypting.
/// Grease stanzas (random `*-grease` stanzas age adds to keep parsers honest) and the
/// location stanza ([`header_location`]) are left out.
pub fn header_stanzas(ciphertext: &[u8]) -> Result<Vec<Stanza>, CryptoError> {
    Ok(header_all(ciphertext)?
        .into_iter()
        .filter(|s| s.kind != super::recipient::LOCATION_STANZA)
        .collect())
}

/// The store location an age file's header names (`-> vars-location <path>`), if any. Read
/// without decrypting it is only a claim; after a decryption succeeded (the header MAC was
/// checked) it is where the file was written for.
pub fn header_location(ciphertext: &[u8]) -> Result<Option<String>, CryptoError> {
    Ok(header_all(ciphertext)?
        .into_iter()
        .find(|s| s.kind == super::recipient::LOCATION_STANZA)
        .and_then(|s| s.first_arg))
}

fn header_all(ciphertext: &[u8]) -> Result<Vec<Stanza>, CryptoError> {
    let header = if ciphertext.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----") {
        let mut r = age::armor::ArmoredReader::new(ciphertext);
        let mut buf = Vec::new();
        // The header is at most a few KiB; reading the whole dearmored file is fine for a check.
        r.read_to_end(&mut buf)
            .map_err(|e| CryptoError::Decrypt(format!("bad armor: {e}")))?;
        buf
    } else {
        ciphertext.to_vec()
    };
    parse_header(&header)
        .ok_or_else(|| CryptoError::Decrypt("not an age file, or its header is damaged".into()))
}

fn parse_header(bytes: &[u8]) -> Option<Vec<Stanza>> {
    let mut lines = bytes.split(|b| *b == b'\n');
    if lines.next()? != b"age-encryption.org/v1" {
        return None;
    }
    let mut stanzas = Vec::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?;
        if let Some(rest) = line.strip_prefix("-> ") {
            let mut parts = rest.split(' ');
            let kind = parts.next()?.to_owned();
            let first_arg = parts.next().map(str::to_owned);
            if !kind.ends_with("-grease") {
                stanzas.push(Stanza { kind, first_arg });
            }
        } else if line.starts_with("---") {
            // The MAC line ends the header; a payload must follow.
            return Some(stanzas);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_without_its_mac_line_is_damaged() {
        assert!(parse_header(b"age-encryption.org/v1\n-> X25519 abc\nbody\n").is_none());
        assert!(parse_header(b"not age\n--- mac\n").is_none());
        let st = parse_header(b"age-encryption.org/v1\n-> a-grease x\n-> X25519 s\nb\n--- m\n");
        assert_eq!(
            st,
            Some(vec![Stanza {
                kind: "X25519".into(),
                first_arg: Some("s".into())
            }])
        );
    }
}
