//! Recipients: parsing `age1…`, `ssh-ed25519 …`, `ssh-rsa …` and plugin recipients once, and
//! encrypting to a set of them in-process. `X25519` and `ssh-ed25519` stanzas are computed by
//! the build's native arithmetic (`curve.rs`, or the age crate's through `ladder.rs`); ssh-rsa and
//! plugins go through age itself.

use std::io::Write as _;
use std::str::FromStr as _;

use super::interaction::{self, Callbacks};
use super::{CryptoError, bech32_bytes, native};
use crate::secret::SecretBytes;

/// A parsed recipient together with the text it was written as.
pub struct Recipient {
    text: String,
    inner: RecipientKind,
}

enum RecipientKind {
    X25519(native::X25519Recipient),
    SshEd25519(Box<native::SshEd25519Recipient>),
    SshRsa(age::ssh::Recipient),
    Plugin(age::plugin::Recipient),
}

impl Recipient {
    /// Parse `age1…`, `ssh-ed25519 …`, `ssh-rsa …` or a plugin recipient (`age1yubikey1…`).
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bad = |reason: &str| CryptoError::BadRecipient {
            reason: reason.to_owned(),
        };
        let inner = if text.starts_with("ssh-") {
            match age::ssh::Recipient::from_str(text).map_err(|e| bad(&format!("{e:?}")))? {
                age::ssh::Recipient::SshEd25519(wire, point) => RecipientKind::SshEd25519(
                    Box::new(native::SshEd25519Recipient::new(wire, point)),
                ),
                rsa @ age::ssh::Recipient::SshRsa(..) => RecipientKind::SshRsa(rsa),
            }
        } else if let Ok(parsed) = age::x25519::Recipient::from_str(text) {
            let public = bech32_bytes(text).ok_or_else(|| bad("not bech32"))?;
            RecipientKind::X25519(native::X25519Recipient::new(*public, parsed))
        } else if text.starts_with("age1") {
            match age::plugin::Recipient::from_str(text) {
                Ok(r) => RecipientKind::Plugin(r),
                Err(_) => {
                    return Err(bad(
                        "an age1… recipient must be 62 characters of bech32 (as printed by age-keygen) or a plugin recipient age1<plugin>1…",
                    ));
                }
            }
        } else {
            return Err(bad("expected age1…, ssh-ed25519 … or ssh-rsa …"));
        };
        Ok(Recipient {
            text: text.to_owned(),
            inner,
        })
    }

    /// The recipient as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether vars can encrypt to it without running anything: an X25519 or ssh-ed25519
    /// recipient. Keys the store itself supplies (`keys/vault.pub`, a machine's generated key)
    /// must be, or a committed file could name a plugin, which age would run outside the
    /// sandbox (review of issue 8, R1 #10).
    pub fn is_native(&self) -> bool {
        matches!(
            self.inner,
            RecipientKind::X25519(_) | RecipientKind::SshEd25519(_)
        )
    }

    /// Whether it is an X25519 (`age1…`) recipient.
    pub fn is_x25519(&self) -> bool {
        matches!(self.inner, RecipientKind::X25519(_))
    }

    /// For ssh recipients, the 4-byte tag age puts in the stanza (`-> ssh-ed25519 TAG …`),
    /// base64 encoded; `None` for recipients whose stanzas do not name them.
    pub fn ssh_tag(&self) -> Option<String> {
        match &self.inner {
            RecipientKind::SshEd25519(_) | RecipientKind::SshRsa(_) => ssh_tag(&self.text),
            _ => None,
        }
    }
}

/// age's ssh stanza tag for an `ssh-…` recipient: the first 4 bytes of SHA-256 of the ssh
/// wire-format public key, base64 encoded; `None` for other recipients. Cheaper than
/// [`Recipient::parse`] followed by [`Recipient::ssh_tag`]: nothing but the hash.
pub fn ssh_tag(text: &str) -> Option<String> {
    if !text.trim_start().starts_with("ssh-") {
        return None;
    }
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = text.split_whitespace().nth(1)?;
    let wire = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let digest = sha2::Sha256::digest(&wire);
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..4]))
}

/// Encrypt `plaintext` to every recipient. Plugin recipients call their plugin program, which
/// talks to the person through the installed [`interaction::Interaction`].
pub fn encrypt(
    plaintext: &SecretBytes,
    recipients: &[&Recipient],
    armor: bool,
) -> Result<Vec<u8>, CryptoError> {
    encrypt_at(plaintext, recipients, armor, None)
}

/// The type of the header stanza that says where in the store a secret belongs.
pub const LOCATION_STANZA: &str = "vars-location";

/// A pseudo-recipient that adds one stanza, `-> vars-location <instance>/<file>`, to the
/// header. No identity unwraps it (age ignores stanza types it does not know, as it ignores
/// grease), and the header MAC, keyed by the file key, covers it: only someone who holds the
/// file key can write a header naming another place. A ciphertext copied to another instance
/// or file (to have it re-encrypted to that instance's readers, or installed as another
/// user's file) therefore still names where it came from, and vars refuses it there.
struct Location(String);

impl age::Recipient for Location {
    fn wrap_file_key(
        &self,
        _file_key: &age_core::format::FileKey,
    ) -> Result<
        (
            Vec<age_core::format::Stanza>,
            std::collections::HashSet<String>,
        ),
        age::EncryptError,
    > {
        Ok((
            vec![age_core::format::Stanza {
                tag: LOCATION_STANZA.to_owned(),
                args: vec![self.0.clone()],
                body: Vec::new(),
            }],
            std::collections::HashSet::new(),
        ))
    }
}

/// [`encrypt`], and with `location` (a store path such as `machines/m/gen/file`, plain
/// characters only) bound into the header ([`LOCATION_STANZA`]).
pub fn encrypt_at(
    plaintext: &SecretBytes,
    recipients: &[&Recipient],
    armor: bool,
    location: Option<&str>,
) -> Result<Vec<u8>, CryptoError> {
    let location = match location {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(Location(l.to_owned()))
        }
        Some(l) => {
            return Err(CryptoError::Encrypt(format!(
                "{:?} cannot be a location",
                crate::text::escape(l)
            )));
        }
        None => None,
    };
    let mut plugin_recipients: Vec<age::plugin::Recipient> = Vec::new();
    let mut natives: Vec<&dyn age::Recipient> = Vec::new();
    // A recipient no key protects is refused by name, before anything is encrypted.
    let refused = |r: &Recipient, reason: &str| CryptoError::BadRecipient {
        reason: format!("{}: {reason}", r.text),
    };
    for r in recipients {
        match &r.inner {
            RecipientKind::X25519(x) => {
                x.prepare().map_err(|e| refused(r, e))?;
                natives.push(x);
            }
            RecipientKind::SshEd25519(s) => {
                s.prepare().map_err(|e| refused(r, e))?;
                natives.push(s.as_ref());
            }
            RecipientKind::SshRsa(s) => natives.push(s),
            RecipientKind::Plugin(p) => plugin_recipients.push(p.clone()),
        }
    }
    let mut plugins = Vec::new();
    let mut names: Vec<String> = plugin_recipients
        .iter()
        .map(|p| p.plugin().to_owned())
        .collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        let ui = Callbacks(interaction::interaction());
        for name in names {
            let these: Vec<_> = plugin_recipients
                .iter()
                .filter(|p| p.plugin() == name)
                .cloned()
                .collect();
            let plugin = age::plugin::RecipientPluginV1::new(&name, &these, &[], ui.clone())
                .map_err(|e| CryptoError::Encrypt(format!("age plugin age-plugin-{name}: {e}")))?;
            plugins.push(plugin);
        }
    }
    // After the real recipients: unwrapping never looks at it.
    if let Some(l) = &location {
        natives.push(l);
    }
    let all = natives
        .into_iter()
        .chain(plugins.iter().map(|p| p as &dyn age::Recipient));
    let fail = |e: &dyn std::fmt::Display| CryptoError::Encrypt(e.to_string());
    let encryptor = age::Encryptor::with_recipients(all).map_err(|e| fail(&e))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    if armor {
        let armored =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| fail(&e))?;
        let mut w = encryptor.wrap_output(armored).map_err(|e| fail(&e))?;
        w.write_all(plaintext.expose()).map_err(|e| fail(&e))?;
        w.finish().and_then(|a| a.finish()).map_err(|e| fail(&e))?;
    } else {
        let mut w = encryptor.wrap_output(&mut out).map_err(|e| fail(&e))?;
        w.write_all(plaintext.expose()).map_err(|e| fail(&e))?;
        w.finish().map_err(|e| fail(&e))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Identities, VaultKey, header_stanzas, new_identity};

    pub(crate) const SSH_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN root@host";

    #[test]
    fn parses_recipient_kinds_and_rejects_garbage() {
        let (_, r) = new_identity();
        assert!(Recipient::parse(&r).is_ok());
        assert!(Recipient::parse(SSH_PUB).is_ok());
        assert!(
            Recipient::parse(
                "age1yubikey1qgqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqxwspvz"
            )
            .is_ok()
        );
        for bad in ["", "hello", "age1xyz", "ssh-ed25519 AAAA"] {
            assert!(Recipient::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn low_order_keys_are_refused_by_name_where_age_would_panic() {
        let (_, fine) = new_identity();
        let fine = Recipient::parse(&fine).unwrap();
        for zero_or_one in [
            "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z",
            "age1qyqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqj7vrya",
        ] {
            assert!(age::x25519::Recipient::from_str(zero_or_one).is_ok());
            let low = Recipient::parse(zero_or_one).unwrap();
            let err = encrypt(&SecretBytes::new(b"x".to_vec()), &[&fine, &low], false)
                .expect_err("refused");
            assert!(
                matches!(err, CryptoError::BadRecipient { .. })
                    && err.to_string().contains(zero_or_one)
                    && err.to_string().contains("low-order"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_recipient_on_the_twist_is_refused_by_name() {
        // u = 2 is not the u-coordinate of any point of Curve25519.
        let mut twist = [0u8; 32];
        twist[0] = 2;
        let text = age_core::primitives::bech32_encode(bech32::Hrp::parse_unchecked("age"), &twist);
        let r = Recipient::parse(&text).unwrap();
        let err = encrypt(&SecretBytes::new(b"x".to_vec()), &[&r], false).expect_err("refused");
        assert!(
            err.to_string().contains(&text) && err.to_string().contains("twist"),
            "{err}"
        );
    }

    #[test]
    fn encrypt_decrypt_round_trip_and_header() {
        let (id_text, r) = new_identity();
        let rec = Recipient::parse(&r).unwrap();
        let ssh = Recipient::parse(SSH_PUB).unwrap();
        for armor in [false, true] {
            let ct = encrypt(&SecretBytes::new(b"s3cret".to_vec()), &[&rec, &ssh], armor).unwrap();
            let mut ids = Identities::default();
            ids.add_identity(
                &id_text,
                "test",
                crate::crypto::identities::PassphraseSource::Ask,
            )
            .unwrap();
            assert_eq!(ids.decrypt(&ct).unwrap().expose(), b"s3cret");
            let st = header_stanzas(&ct).unwrap();
            assert_eq!(st.len(), 2);
            assert_eq!(st[0].kind, "X25519");
            assert_eq!(st[1].kind, "ssh-ed25519");
            assert_eq!(st[1].first_arg, ssh.ssh_tag());
        }
    }

    #[test]
    fn truncated_file_is_rejected() {
        let (_, r) = new_identity();
        let rec = Recipient::parse(&r).unwrap();
        let ct = encrypt(&SecretBytes::new(b"x".to_vec()), &[&rec], false).unwrap();
        assert!(header_stanzas(&ct[..20]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        #[test]
        fn any_plaintext_round_trips(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096), armor: bool) {
            let v = VaultKey::generate();
            let r = Recipient::parse(&v.recipient()).unwrap();
            let ct = encrypt(&SecretBytes::new(bytes.clone()), &[&r], armor).unwrap();
            let mut ids = Identities::default();
            ids.add_vault(&v);
            let plain = ids.decrypt(&ct).unwrap();
            proptest::prop_assert_eq!(plain.expose(), &bytes[..]);
        }
    }
}
