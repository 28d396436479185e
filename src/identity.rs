//! Finding the admin's (or user's) identities in the documented order (DESIGN §4), reading
//! every kind of identity vars accepts, and creating new ones for `vars keygen`. What they
//! unlock is [`crate::vault`]'s business; parsing and decrypting is [`crate::crypto`]'s; the
//! OS keyring is [`crate::keyring`]'s.
//!
//! Kinds of identity, told apart by content:
//!
//! - age identity files (`AGE-SECRET-KEY-1…`, and `AGE-PLUGIN-…` lines that run
//!   `age-plugin-<name>` from `PATH`, e.g. `age-plugin-yubikey`);
//! - passphrase-protected age identity files (`age -p` output, binary or armored);
//! - OpenSSH ed25519 (and RSA) private keys, with or without a passphrase.
//!
//! Passphrases come from the file named by `$VARS_PASSPHRASE_FILE` when it is set (one
//! trailing newline is ignored), else from the terminal. With neither, the error says so.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use crate::crypto::{self, CryptoError, Identities, IdentityFormat};
use crate::env;
use crate::fs_util::{self, IoError};
use crate::keyring::{self, KeyringError};
use crate::secret::SecretBytes;

/// How the keyring identity is named in messages and in [`Identities::sources`].
pub const KEYRING_SOURCE: &str = "the OS keyring entry vars/identity";

/// Errors finding, loading or creating identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity was found anywhere (and no `--identity` was given).
    #[error("no identity found; tried: {}", tried.join(", "))]
    NoneFound {
        /// Every place tried, in order.
        tried: Vec<String>,
    },
    /// An identity exists but cannot be parsed or read.
    #[error(transparent)]
    Bad(#[from] CryptoError),
    /// An identity is protected by a passphrase, `$VARS_PASSPHRASE_FILE` is not set and
    /// standard input is not a terminal to ask on.
    #[error("{source_name} is protected by a passphrase, and there is no terminal to ask for it")]
    NoPassphrase {
        /// The identity (file path or keyring entry).
        source_name: String,
    },
    /// The passphrase does not decrypt the identity.
    #[error("wrong passphrase for {source_name}")]
    WrongPassphrase {
        /// The identity (file path or keyring entry).
        source_name: String,
    },
    /// `$VARS_PASSPHRASE_FILE` is set but cannot be read.
    #[error("cannot read the passphrase: {0}")]
    PassphraseFile(IoError),
    /// An identity file names an age plugin whose program is not on `PATH`.
    #[error(
        "{source_name} is a plugin identity, but {binary} is not installed (not found on PATH)"
    )]
    PluginMissing {
        /// The identity (file path or keyring entry).
        source_name: String,
        /// The plugin program, e.g. `age-plugin-yubikey`.
        binary: String,
    },
    /// `vars keygen` would overwrite an existing identity file.
    #[error("{} already exists; not overwriting an identity", path.display())]
    FileExists {
        /// The existing file.
        path: PathBuf,
    },
    /// `vars keygen --keyring` would overwrite the identity already in the keyring.
    #[error("{KEYRING_SOURCE} already holds an identity; not overwriting it")]
    KeyringExists,
    /// No default identity path: neither `$XDG_CONFIG_HOME` nor `$HOME` is set.
    #[error("cannot tell where to write the identity: neither XDG_CONFIG_HOME nor HOME is set")]
    NoDefaultPath,
    /// Writing a new identity file failed.
    #[error(transparent)]
    Write(IoError),
    /// The OS keyring is not usable, or failed.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

/// One place identities are looked for.
enum Candidate {
    File(PathBuf),
    Keyring,
}

/// `~/.config/vars/identity.txt` (honouring `$XDG_CONFIG_HOME`): where `vars keygen` writes by
/// default and the third place [`load`] looks.
pub fn default_identity_path() -> Option<PathBuf> {
    let config_home = std::env::var_os(env::XDG_CONFIG_HOME)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(env::HOME).map(|h| PathBuf::from(h).join(".config")))?;
    Some(config_home.join("vars/identity.txt"))
}

fn candidates() -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(env::IDENTITY_FILE).filter(|p| !p.is_empty()) {
        out.push(Candidate::File(PathBuf::from(p)));
    }
    out.push(Candidate::Keyring);
    if let Some(p) = default_identity_path() {
        out.push(Candidate::File(p));
    }
    if let Some(h) = std::env::var_os(env::HOME) {
        out.push(Candidate::File(PathBuf::from(h).join(".ssh/id_ed25519")));
    }
    out
}

/// The identity files looked for, in order: explicit `--identity` files, else
/// `$VARS_IDENTITY_FILE`, `~/.config/vars/identity.txt`, `~/.ssh/id_ed25519`. The keyring
/// entry, tried between the first two defaults, is not a file and is not listed.
pub fn candidate_paths(explicit: &[PathBuf]) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    candidates()
        .into_iter()
        .filter_map(|c| match c {
            Candidate::File(p) => Some(p),
            Candidate::Keyring => None,
        })
        .collect()
}

/// Load identities: every explicit file (any error is fatal), or else the first default that
/// exists, in the order of DESIGN §4: `$VARS_IDENTITY_FILE`, the keyring entry written by
/// `vars keygen --keyring`, `~/.config/vars/identity.txt`, `~/.ssh/id_ed25519`. A keyring that
/// is not usable here is skipped (and named in the error if nothing is found).
pub fn load(explicit: &[PathBuf]) -> Result<Identities, IdentityError> {
    let mut ids = Identities::default();
    if !explicit.is_empty() {
        for p in explicit {
            add_file(&mut ids, p)?;
        }
        return Ok(ids);
    }
    let mut tried: Vec<String> = vec!["--identity".into()];
    if std::env::var_os(env::IDENTITY_FILE).is_none_or(|p| p.is_empty()) {
        tried.push(format!("${}", env::IDENTITY_FILE));
    }
    for c in candidates() {
        match c {
            Candidate::File(p) => {
                if p.is_file() {
                    add_file(&mut ids, &p)?;
                    return Ok(ids);
                }
                tried.push(p.display().to_string());
            }
            Candidate::Keyring => match keyring::load_identity() {
                Ok(Some(text)) => {
                    add_bytes(&mut ids, &text, KEYRING_SOURCE, true)?;
                    return Ok(ids);
                }
                Ok(None) => tried.push(format!("{KEYRING_SOURCE} (empty)")),
                Err(KeyringError::NoSession) => {
                    tried.push(format!("{KEYRING_SOURCE} (no session keyring)"));
                }
                Err(e) => tried.push(format!("{KEYRING_SOURCE} ({e})")),
            },
        }
    }
    Err(IdentityError::NoneFound { tried })
}

/// Load one identity file of any supported kind into `ids`.
pub fn add_file(ids: &mut Identities, path: &Path) -> Result<(), IdentityError> {
    let bytes = SecretBytes::new(fs_util::read(path).map_err(CryptoError::from)?);
    add_bytes(ids, &bytes, &path.display().to_string(), true)
}

/// Load identity bytes named `source` in messages. `outer` is false for the content of a
/// passphrase-protected file, which may not be passphrase-protected again.
fn add_bytes(
    ids: &mut Identities,
    bytes: &SecretBytes,
    source: &str,
    outer: bool,
) -> Result<(), IdentityError> {
    let bad = |reason: String| {
        IdentityError::Bad(CryptoError::BadIdentity {
            path: PathBuf::from(source),
            reason,
        })
    };
    match crypto::identity_format(bytes.expose()).map_err(bad)? {
        IdentityFormat::Age => {
            for name in crypto::plugin_names(bytes.expose()) {
                let binary = format!("age-plugin-{name}");
                if !on_path(&binary) {
                    return Err(IdentityError::PluginMissing {
                        source_name: source.to_owned(),
                        binary,
                    });
                }
            }
            ids.add_bytes(bytes.expose(), source).map_err(bad)
        }
        IdentityFormat::Ssh => ids.add_bytes(bytes.expose(), source).map_err(bad),
        IdentityFormat::SshEncrypted => {
            let pass = passphrase(source)?;
            if ids
                .add_encrypted_ssh(bytes.expose(), source, &pass)
                .map_err(bad)?
            {
                Ok(())
            } else {
                Err(IdentityError::WrongPassphrase {
                    source_name: source.to_owned(),
                })
            }
        }
        IdentityFormat::PassphraseProtected if outer => {
            let pass = passphrase(source)?;
            let inner =
                crypto::decrypt_with_passphrase(bytes.expose(), &pass)?.ok_or_else(|| {
                    IdentityError::WrongPassphrase {
                        source_name: source.to_owned(),
                    }
                })?;
            add_bytes(ids, &inner, source, false)
        }
        IdentityFormat::PassphraseProtected => Err(bad(
            "it is passphrase-protected twice; decrypt the outer layer first".into(),
        )),
    }
}

/// The passphrase for `source`: from `$VARS_PASSPHRASE_FILE`, else asked on the terminal.
fn passphrase(source: &str) -> Result<SecretBytes, IdentityError> {
    if let Some(file) = std::env::var_os(env::PASSPHRASE_FILE).filter(|p| !p.is_empty()) {
        let mut bytes = fs_util::read(Path::new(&file)).map_err(IdentityError::PassphraseFile)?;
        // `echo pass > file` adds a newline that is not part of the passphrase.
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        return Ok(SecretBytes::new(bytes));
    }
    let no_passphrase = || IdentityError::NoPassphrase {
        source_name: source.to_owned(),
    };
    if !std::io::stdin().is_terminal() {
        return Err(no_passphrase());
    }
    rpassword::prompt_password(format!("Passphrase for {source}: "))
        .map(|s| SecretBytes::new(s.into_bytes()))
        .map_err(|_| no_passphrase())
}

/// Whether a program is on `PATH` (as age looks for plugins).
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Where `vars keygen` put a new identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An identity file.
    File(PathBuf),
    /// The OS keyring entry read by [`load`].
    Keyring,
}

/// Create a new X25519 identity at `dest` and return its recipient (`age1…`).
///
/// A file is created 0600 and exclusively (missing parent directories are created 0700); an
/// existing file or keyring entry is replaced only with `force`, a file then atomically and
/// still 0600 (DESIGN §9.5).
pub fn keygen(dest: &Destination, force: bool) -> Result<String, IdentityError> {
    let (text, recipient) = crypto::new_identity();
    match dest {
        Destination::File(path) => write_identity_file(path, &text, force)?,
        Destination::Keyring => {
            if !force && keyring::identity_exists()? {
                return Err(IdentityError::KeyringExists);
            }
            keyring::store_identity(&text)?;
        }
    }
    Ok(recipient)
}

fn write_identity_file(path: &Path, text: &SecretBytes, force: bool) -> Result<(), IdentityError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| {
                IdentityError::Write(IoError {
                    action: "create directory",
                    path: dir.to_path_buf(),
                    source,
                })
            })?;
    }
    if force {
        return fs_util::write_atomic(path, text.expose(), 0o600).map_err(IdentityError::Write);
    }
    match fs_util::write_new(path, text.expose(), 0o600) {
        Ok(()) => Ok(()),
        Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(IdentityError::FileExists {
                path: path.to_path_buf(),
            })
        }
        Err(e) => {
            // A half-written identity file is useless; do not leave it behind.
            if e.action != "create" {
                let _ = std::fs::remove_file(path);
            }
            Err(IdentityError::Write(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn keygen_file_is_0600_exclusive_and_force_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/sub/identity.txt");
        let dest = Destination::File(path.clone());
        let r1 = keygen(&dest, false).unwrap();
        assert!(r1.starts_with("age1"));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let before = std::fs::read(&path).unwrap();
        assert!(matches!(
            keygen(&dest, false),
            Err(IdentityError::FileExists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), before, "file unchanged");
        let r2 = keygen(&dest, true).unwrap();
        assert_ne!(r1, r2);
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(&r2), "the file names its recipient");
    }

    #[test]
    fn loads_plain_and_passphrase_protected_identity_bytes() {
        let (text, recipient) = crypto::new_identity();
        let r = crypto::Recipient::parse(&recipient).unwrap();
        let ct = crypto::encrypt(&SecretBytes::new(b"hi".to_vec()), &[&r], false).unwrap();

        let mut ids = Identities::default();
        add_bytes(&mut ids, &text, "plain", true).unwrap();
        assert_eq!(ids.decrypt(&ct).unwrap().expose(), b"hi");

        // Passphrase-protected twice is refused before any passphrase is asked for.
        let pass = SecretBytes::new(b"pw".to_vec());
        let once = SecretBytes::new(crypto::encrypt_with_passphrase(&text, &pass, true).unwrap());
        let mut ids = Identities::default();
        let err = add_bytes(&mut ids, &once, "twice", false).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let inner = crypto::decrypt_with_passphrase(once.expose(), &pass)
            .unwrap()
            .unwrap();
        assert_eq!(inner.expose(), text.expose());
        assert!(
            crypto::decrypt_with_passphrase(once.expose(), &SecretBytes::new(b"no".to_vec()))
                .unwrap()
                .is_none(),
            "a wrong passphrase is reported as such"
        );
    }

    #[test]
    fn missing_plugin_is_named() {
        // What `age-plugin-yubikey --identity` prints has this shape; the plugin is absent here.
        let line = crypto::plugin_default_identity("yubikey").unwrap();
        let mut ids = Identities::default();
        let err =
            add_bytes(&mut ids, &SecretBytes::new(line.into_bytes()), "yk", true).unwrap_err();
        match err {
            IdentityError::PluginMissing { binary, .. } => {
                assert_eq!(binary, "age-plugin-yubikey");
            }
            other => panic!("unexpected {other}"),
        }
    }
}
