//! Unit tests of the content rules on key material built at run time (nothing key-shaped is
//! committed here, so `vars scan` of this repository stays clean). The integration tests in
//! `tests/it/scan.rs` use keys made by the real tools.

use super::pem::trim_wrapping;
use super::*;
use crate::scan::Level;
use crate::scan::bech32::bech32_encode;

/// Deterministic pseudo-random bytes (xorshift), enough for base64 bodies of any variety.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A PEM block with a random body in 64-column lines, joined with `nl`.
fn pem(label: &str, nl: &str) -> String {
    let body = b64(&bytes(7, 400));
    let mut lines = vec![format!("-----BEGIN {label}-----")];
    lines.extend(
        body.as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned()),
    );
    lines.push(format!("-----END {label}-----"));
    lines.join(nl)
}

fn rules_in(path: &str, text: &str) -> Vec<Rule> {
    scan_content(path, text.as_bytes())
        .into_iter()
        .map(|h| h.rule)
        .collect()
}

const KINDS: [&str; 7] = [
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "DSA PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
];

#[test]
fn pem_keys_are_found_in_every_wrapping() {
    for kind in KINDS {
        let plain = pem(kind, "\n");
        let yaml = format!("tls:\n  key: |\n    {}\n", pem(kind, "\n    "));
        let json = format!("{{\"key\": \"{}\\n\"}}", pem(kind, "\\n"));
        let json2 = format!("\"{{\\\"key\\\": \\\"{}\\\"}}\"", pem(kind, "\\\\n"));
        let nix = format!("{{\n  key = ''\n    {}\n  '';\n}}\n", pem(kind, "\n    "));
        let nix_str = format!("{{ key = \"{}\"; }}\n", pem(kind, "\\n"));
        let crlf = pem(kind, "\r\n");
        let commented = format!("# {}\n", pem(kind, "\n# "));
        let concatenated = format!("key = \"{}\\n\";\n", pem(kind, "\\n\" +\n  \""));
        for (what, text) in [
            ("plain", plain),
            ("yaml", yaml),
            ("json", json),
            ("json in json", json2),
            ("nix ''", nix),
            ("nix \"\"", nix_str),
            ("crlf", crlf),
            ("comment", commented),
            ("concatenated", concatenated),
        ] {
            let hits = scan_content("f", text.as_bytes());
            assert_eq!(hits.len(), 1, "{kind} {what}: {hits:?}\n{text}");
            assert_eq!(hits[0].rule, Rule::PrivateKey, "{kind} {what}");
            assert_eq!(
                hits[0].start,
                text.find("-----BEGIN").unwrap(),
                "{kind} {what}"
            );
        }
    }
}

#[test]
fn encrypted_pem_headers_are_part_of_the_key() {
    let body = b64(&bytes(3, 300));
    let text = format!(
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0123456789ABCDEF\n\n{body}\n-----END RSA PRIVATE KEY-----\n"
    );
    assert_eq!(rules_in("k", &text), [Rule::PrivateKey]);
}

#[test]
fn documents_certificates_and_public_keys_are_not_keys() {
    let decoys = [
        "Keys start with -----BEGIN OPENSSH PRIVATE KEY----- and end with a footer.".to_owned(),
        format!(
            "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n{}",
            "then a long paragraph of prose about keys. ".repeat(10)
        ),
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nsee the manual for the format of this section, it is long and {}\n-----END OPENSSH PRIVATE KEY-----",
            "explains everything in words ".repeat(8)
        ),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            "A".repeat(200)
        ),
        pem("PUBLIC KEY", "\n"),
        pem("CERTIFICATE", "\n"),
        pem("AGE ENCRYPTED FILE", "\n"),
        pem("PGP PUBLIC KEY BLOCK", "\n"),
        pem("SSH2 PUBLIC KEY", "\n"),
        "const BEGIN: &str = \"-----BEGIN\";\nlet x = a == b;\n".to_owned(),
    ];
    for d in decoys {
        assert!(scan_content("doc.md", d.as_bytes()).is_empty(), "{d}");
    }
}

#[test]
fn a_key_without_its_end_line_is_still_found_when_long() {
    let mut text = pem("OPENSSH PRIVATE KEY", "\n");
    text.truncate(text.find("-----END").unwrap());
    assert_eq!(rules_in("k", &text), [Rule::PrivateKey]);
    let short = format!("-----BEGIN EC PRIVATE KEY-----\n{}\n", b64(&bytes(1, 60)));
    assert!(rules_in("k", &short).is_empty());
}

#[test]
fn base64_of_a_pem_key_is_found() {
    let inner = pem("EC PRIVATE KEY", "\n");
    let text = format!(
        "apiVersion: v1\nkind: Secret\ndata:\n  tls.key: {}\n",
        b64(inner.as_bytes())
    );
    let hits = scan_content("secret.yaml", text.as_bytes());
    assert_eq!(hits.len(), 1);
    assert!(
        hits[0].message.starts_with("base64-encoded EC private key"),
        "{}",
        hits[0].message
    );
    let cert = format!("  tls.crt: {}\n", b64(pem("CERTIFICATE", "\n").as_bytes()));
    assert!(scan_content("secret.yaml", cert.as_bytes()).is_empty());
}

#[test]
fn ssh2_and_putty_keys_are_found_and_their_quotes_are_not() {
    let body = b64(&bytes(5, 300));
    let ssh2 = format!(
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"rsa-key-20240101\"\n{body}\n---- END SSH2 ENCRYPTED PRIVATE KEY ----\n"
    );
    assert_eq!(rules_in("k", &ssh2), [Rule::Ssh2PrivateKey]);
    let ppk = format!(
        "{}-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: x\nPublic-Lines: 2\n{}\nPrivate-Lines: 1\n{}\nPrivate-MAC: 00ff\n",
        "PuTTY",
        b64(&bytes(9, 60)),
        b64(&bytes(10, 40))
    );
    assert_eq!(rules_in("k.ppk", &ppk), [Rule::PuttyPrivateKey]);
    let doc = format!(
        "A .ppk file starts with `{}-User-Key-File-3: ssh-ed25519`\nand more.",
        "PuTTY"
    );
    assert!(rules_in("doc.md", &doc).is_empty());
}

#[test]
fn bech32_vectors() {
    // BIP 173's valid test vectors.
    for ok in [
        "A12UEL5L",
        "a12uel5l",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
    ] {
        assert!(bech32_valid(ok), "{ok}");
    }
    for bad in [
        "A12UEL5l",
        "a12uel5m",
        "pzry9x0s0muk",
        "1pzry9x0s0muk",
        "a1",
    ] {
        assert!(!bech32_valid(bad), "{bad}");
    }
    assert!(bech32_valid(&bech32_encode(
        "age-secret-key-",
        &bytes(2, 32)
    )));
}

fn identity(seed: u64) -> String {
    bech32_encode("age-secret-key-", &bytes(seed, 32)).to_ascii_uppercase()
}

#[test]
fn age_identities_need_their_checksum() {
    let id = identity(11);
    assert_eq!(id.len(), "AGE-SECRET-KEY-1".len() + 58);
    let file = format!("# created: 2024-01-01T00:00:00Z\n# public key: age1xyz\n{id}\n");
    assert_eq!(rules_in("key.txt", &file), [Rule::AgeIdentity]);
    assert_eq!(rules_in("k", &id.to_ascii_lowercase()), [Rule::AgeIdentity]);
    let yaml = format!("identity: \"{id}\"\n");
    assert_eq!(rules_in("k.yaml", &yaml), [Rule::AgeIdentity]);
    // One character changed: the checksum fails, so it is a placeholder.
    let mut broken = id.clone().into_bytes();
    let last = broken.len() - 1;
    broken[last] = if broken[last] == b'Q' { b'P' } else { b'Q' };
    let broken = String::from_utf8(broken).unwrap();
    assert_eq!(
        rules_in("README.md", &broken),
        [Rule::AgeIdentityPlaceholder]
    );
    let placeholder = format!("AGE-SECRET-KEY-1{}", "Q".repeat(58));
    assert_eq!(
        rules_in("README.md", &placeholder),
        [Rule::AgeIdentityPlaceholder]
    );
    assert!(rules_in("README.md", "AGE-SECRET-KEY-1… goes here").is_empty());
    let pq = bech32_encode("age-secret-key-pq-", &bytes(12, 32)).to_ascii_uppercase();
    assert_eq!(rules_in("k", &pq), [Rule::AgeIdentity]);
}

#[test]
fn wireguard_keys_in_configs() {
    let key = b64(&bytes(21, 32));
    let psk = b64(&bytes(22, 32));
    for (text, want) in [
        (
            format!("[Interface]\nPrivateKey = {key}\nAddress = 10.0.0.1/24\n"),
            1,
        ),
        (format!("{{ privateKey = \"{key}\"; }}"), 1),
        (format!("{{\"private_key\": \"{key}\"}}"), 1),
        (format!("wg:\n  private-key: '{key}'\n"), 1),
        (format!("[Peer]\nPresharedKey = {psk}\n"), 1),
        (format!("[Peer]\nPublicKey = {key}\n"), 0),
        ("privateKeyFile = \"/run/vars/wg/key\";".to_owned(), 0),
        (format!("PrivateKey = {key}AAAA\n"), 0),
    ] {
        let got = rules_in("wg0.conf", &text);
        assert_eq!(got.len(), want, "{text}");
        assert!(got.iter().all(|r| *r == Rule::WireguardPrivateKey));
    }
    assert_eq!(
        rules_in("keys/wg-private.key", &format!("{key}\n")),
        [Rule::WireguardPrivateKey]
    );
    assert!(rules_in("keys/wg-public.key", &format!("{key}\n")).is_empty());
}

fn nix_key(seed: &[u8; 32]) -> String {
    use sha2::Digest as _;
    let h = sha2::Sha512::digest(seed);
    let public = curve25519_dalek::EdwardsPoint::mul_base_clamped(h[..32].try_into().unwrap())
        .compress()
        .to_bytes();
    let mut sk = seed.to_vec();
    sk.extend_from_slice(&public);
    format!("cache.example.org-1:{}", b64(&sk))
}

#[test]
fn nix_signing_keys_are_verified_not_guessed() {
    let seed: [u8; 32] = bytes(31, 32).try_into().unwrap();
    let key = nix_key(&seed);
    assert_eq!(rules_in("secret-key", &key), [Rule::NixSigningKey]);
    let conf = format!("{{ nix.settings.secret-key-files = []; k = \"{key}\"; }}");
    let hits = scan_content("x.nix", conf.as_bytes());
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].start, conf.find("cache.example").unwrap());
    // 64 random bytes after a name and a colon: not a key pair, not reported.
    let random = format!("sha512:{}", b64(&bytes(32, 64)));
    assert!(rules_in("lock", &random).is_empty());
    let public = format!("cache.example.org-1:{}", b64(&bytes(33, 32)));
    assert!(rules_in("nix.conf", &public).is_empty());
}

#[test]
fn nix_passwords_and_hashes_are_warnings() {
    let nix = "users.users.alice = {\n  initialPassword = \"hunter2\";\n  password = \"${secret}\";\n};\n";
    let hits = scan_content("configuration.nix", nix.as_bytes());
    assert_eq!(
        hits.iter().map(|h| h.rule).collect::<Vec<_>>(),
        [Rule::NixPlaintextPassword]
    );
    assert_eq!(
        hits[0].fingerprint_text, b"initialPassword",
        "the value is not fingerprinted"
    );
    assert!(rules_in("main.rs", "let password = \"x\";").is_empty());
    let hash = format!(
        "users.users.root.hashedPassword = \"$6${}\";",
        "a".repeat(40)
    );
    assert_eq!(rules_in("host.nix", &hash), [Rule::PasswordHash]);
    assert_eq!(Rule::PasswordHash.level(), Level::Warning);
    assert!(rules_in("host.nix", "hashedPasswordFile = \"/run/x\";").is_empty());
}

#[test]
fn binary_and_path_rules() {
    assert!(is_binary(b"abc\0def"));
    assert!(!is_binary(b"plain text"));
    let mut late = vec![b'a'; 9000];
    late.push(0);
    assert!(!is_binary(&late));
    assert_eq!(
        path_rule("certs/client.P12").map(|h| h.rule),
        Some(Rule::Pkcs12File)
    );
    assert!(path_rule("docs/p12.md").is_none());
}

#[test]
fn rule_ids_round_trip() {
    for r in Rule::ALL {
        assert_eq!(Rule::from_id(r.id()), Some(r));
        assert!(!r.description().is_empty() && !r.hint().is_empty());
    }
    assert!(Rule::StoreNotAge.is_store_rule() && !Rule::PrivateKey.is_store_rule());
}

/// An unencrypted ed25519 (OID 1.3.101.112) or X25519 (1.3.101.110) PKCS#8 key as `openssl
/// genpkey` writes it: 48 bytes of DER, a body of exactly 64 base64 characters.
fn pkcs8_short(oid_last: u8, key: &[u8; 32]) -> String {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, oid_last, 0x04, 0x22,
        0x04, 0x20,
    ];
    der.extend_from_slice(key);
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        b64(&der)
    )
}

#[test]
fn short_pkcs8_keys_ending_in_slash_or_plus_are_found() {
    // Review 2, finding 2: the final `/` or `+` of a 64-character body was trimmed as
    // concatenation syntax, leaving 63 characters, one short of the minimum.
    for (oid_last, what) in [(0x70, "ed25519"), (0x6e, "x25519")] {
        for (last, ends) in [(0x3f, '/'), (0x3e, '+'), (0x00, 'A')] {
            let mut key: [u8; 32] = bytes(u64::from(last) + u64::from(oid_last), 32)
                .try_into()
                .unwrap();
            // The last base64 character encodes the low six bits of the last byte.
            key[31] = (key[31] & 0xc0) | (last & 0x3f);
            let pem = pkcs8_short(oid_last, &key);
            let body = pem.lines().nth(1).unwrap();
            assert_eq!(body.len(), 64);
            assert!(body.ends_with(ends), "{body}");
            // Also quoted in code, where a `+` after the quote is syntax.
            let js = format!(
                "const k = \"{}\";\n",
                pem.trim_end().replace('\n', "\\n\" +\n  \"")
            );
            let yaml = format!("key: |\n  {}\n", pem.trim_end().replace('\n', "\n  "));
            for text in [&pem, &js, &yaml] {
                assert_eq!(
                    rules_in("k", text),
                    [Rule::PrivateKey],
                    "{what} {ends}: {text}"
                );
            }
        }
    }
}

#[test]
fn wrapping_is_trimmed_but_base64_slashes_and_pluses_are_kept() {
    for (line, want) in [
        ("ab+/", "ab+/"),
        ("/ab+", "/ab+"),
        ("+/ab", "+/ab"),
        ("\"ab/\" +", "ab/"),
        ("\"ab+\"+", "ab+"),
        ("// ab/", "ab/"),
        ("/* ab+ */", "ab+"),
        (" * ab", "ab"),
        ("# ab+/,", "ab+/"),
        ("+ \"ab\" +", "ab"),
        ("+", ""),
        ("// /", ""),
        ("", ""),
    ] {
        assert_eq!(
            String::from_utf8_lossy(trim_wrapping(line.as_bytes())),
            want,
            "{line:?}"
        );
    }
}

#[test]
fn base64_pem_is_found_at_any_alignment_and_each_key_once() {
    let key = pem("EC PRIVATE KEY", "\n");
    let encoded = b64(key.as_bytes());
    // After other base64 text of each length mod 4, in one run: the block starts where its
    // own encoding starts, not a multiple of four into the run.
    for pad in 0..4 {
        let text = format!("v: {}{encoded}\n", "QUJD".repeat(3)[..4 + pad].to_owned());
        let hits = scan_content("f.yaml", text.as_bytes());
        assert_eq!(hits.len(), 1, "pad {pad}");
        assert_eq!(
            &text[hits[0].start..hits[0].start + 14],
            "LS0tLS1CRUdJTi",
            "pad {pad}"
        );
    }
    // A keyword at another alignment earlier in the run (decoding from it garbles the key)
    // does not hide the key.
    let text = format!("v: ALS0tLS1CRUdJTiA{encoded}\n");
    let hits = scan_content("f.yaml", text.as_bytes());
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].start, 3 + 16);
    // Many keywords that decode to nothing, in one run and in many.
    let noise = format!("w: {}\n", "LS0tLS1CRUdJTi".repeat(1000));
    assert!(scan_content("f.yaml", noise.as_bytes()).is_empty());
    let noise = "LS0tLS1CRUdJTi ".repeat(1000);
    assert!(scan_content("f.yaml", noise.as_bytes()).is_empty());
    // Two keys in one run: the run is decoded once, and both are found, the second wherever
    // it starts.
    let two = format!("v: {}\n", b64(format!("{key}\n{key}").as_bytes()));
    assert_eq!(
        rules_in("f.yaml", &two),
        [Rule::PrivateKey, Rule::PrivateKey]
    );
}

/// `text` in `width`-column lines, each prefixed with `indent`, joined with `nl`.
fn wrap(text: &str, width: usize, indent: &str, nl: &str) -> String {
    text.as_bytes()
        .chunks(width)
        .map(|c| format!("{indent}{}", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(nl)
}

#[test]
fn base64_wrapped_over_lines_is_followed_across_them() {
    let key = pem("RSA PRIVATE KEY", "\n");
    let encoded = b64(key.as_bytes());
    for (width, indent, nl) in [
        (76, "", "\n"),
        (64, "", "\n"),
        (76, "", "\r\n"),
        (76, "    ", "\n"),
        (60, "\t", "\n"),
    ] {
        let body = wrap(&encoded, width, indent, nl);
        for text in [
            format!("{body}\n"),
            format!(
                "data:\n  tls.key: |\n{}\n  other: x\n",
                wrap(&encoded, width, "    ", nl)
            ),
        ] {
            let hits = scan_content("f", text.as_bytes());
            assert_eq!(hits.len(), 1, "{width} {indent:?} {nl:?}: {hits:?}");
            assert!(
                hits[0].message.starts_with("base64-encoded RSA"),
                "{hits:?}"
            );
            assert_eq!(&text[hits[0].start..hits[0].start + 14], "LS0tLS1CRUdJTi");
            // The finding spans the key's lines, and ends where its encoding ends.
            assert!(hits[0].end > hits[0].start + encoded.len(), "{hits:?}");
        }
    }
    // A first line alone (57 bytes of the block) is no key, and prose after a run is not
    // joined to it.
    let first = format!("{}\n\nThe key above is cut.\n", &encoded[..76]);
    assert!(scan_content("f", first.as_bytes()).is_empty());
    // A wrapped certificate is still no key.
    let cert = wrap(&b64(pem("CERTIFICATE", "\n").as_bytes()), 76, "", "\n");
    assert!(scan_content("f", cert.as_bytes()).is_empty());
}

#[test]
fn base64_of_an_age_identity_file_is_found_at_every_alignment() {
    let id = identity(21);
    for lead in ["", "x", "xy"] {
        let file = format!("# created: 2024-01-01T00:00:00Z\n# public key: age1xyz{lead}\n{id}\n");
        let encoded = b64(file.as_bytes());
        for text in [
            format!("apiVersion: v1\nkind: Secret\ndata:\n  keys.txt: {encoded}\n"),
            format!("{}\n", wrap(&encoded, 76, "", "\n")),
            format!("keys: |\n{}\n", wrap(&encoded, 64, "  ", "\r\n")),
            // No `# created:` line: the identity's own encoding wakes the rule.
            format!("v: {}\n", b64(format!("{lead}{id}\n").as_bytes())),
        ] {
            let hits = scan_content("s.yaml", text.as_bytes());
            assert_eq!(hits.len(), 1, "{lead:?} {text}: {hits:?}");
            assert_eq!(hits[0].rule, Rule::AgeIdentity);
            assert!(hits[0].message.starts_with("base64-encoded age identity"));
        }
    }
    // Base64 of a document that names the prefix is no identity.
    let doc = b64(b"an age identity starts with AGE-SECRET-KEY-1, then 58 characters");
    assert!(scan_content("f", doc.as_bytes()).is_empty());
}

#[test]
fn keys_whose_newlines_became_spaces_are_found() {
    for kind in KINDS {
        // `echo $(cat key)`: one line, the key's lines joined with single spaces.
        let collapsed = pem(kind, " ");
        assert_eq!(rules_in("k", &collapsed), [Rule::PrivateKey], "{kind}");
        let env = format!("KEY=\"{}\"\n", pem(kind, "  "));
        assert_eq!(rules_in(".env", &env), [Rule::PrivateKey], "{kind}");
    }
    let encrypted = format!(
        "-----BEGIN RSA PRIVATE KEY----- Proc-Type: 4,ENCRYPTED DEK-Info: AES-128-CBC,0A1B2C {} -----END RSA PRIVATE KEY-----",
        wrap(&b64(&bytes(3, 600)), 64, "", " ")
    );
    assert_eq!(rules_in("k", &encrypted), [Rule::PrivateKey]);
    // Prose and placeholders between the markers are not.
    for doc in [
        "-----BEGIN PRIVATE KEY----- paste the base64 body of your key here and keep it secret from anyone who asks ABCDEFGHIJKLMNOPQRSTUVWXYZ -----END PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ ... AAAAAAECAwQF -----END OPENSSH PRIVATE KEY-----",
    ] {
        assert!(rules_in("README.md", doc).is_empty(), "{doc}");
    }
}

#[test]
fn key_lines_behind_quote_and_comment_prefixes_are_found() {
    for kind in KINDS {
        let key = pem(kind, "\n");
        for (before, after) in [
            ("> ", ""),
            ("> > ", ""),
            ("| ", " |"),
            ("|", "|"),
            ("-- ", ""),
            ("% ", ""),
            ("%% ", ""),
            ("  - ", ""),
        ] {
            let text: String = key
                .lines()
                .map(|l| format!("{before}{l}{after}\n"))
                .collect();
            assert_eq!(
                rules_in("f.md", &text),
                [Rule::PrivateKey],
                "{kind} {before:?}"
            );
        }
    }
    // A quoted README line and a table of header lines are still not keys.
    let doc = "> -----BEGIN PRIVATE KEY-----\n> (your key here)\n> -----END PRIVATE KEY-----\n";
    assert!(rules_in("f.md", doc).is_empty());
    let table = "| begins | ends |\n|---|---|\n| `-----BEGIN PRIVATE KEY-----` | `-----END PRIVATE KEY-----` |\n";
    assert!(rules_in("f.md", table).is_empty());
}
