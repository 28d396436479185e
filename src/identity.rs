//! Finding the admin's (or user's) identities in the documented order (DESIGN §4) and creating
//! new ones for `vars keygen`. This module decides *which* identity is read: the order, the
//! environment (`$VARS_IDENTITY_FILE`, `$VARS_PASSPHRASE_FILE`), the file checks (an identity
//! named but missing is an error; one readable by group or others is refused, as ssh does,
//! DESIGN §9.5) and the keyring entry. Telling the format, passphrases, plugins and decryption
//! are [`crate::crypto::identities`]' business: each file's bytes go there once, one way. What
//! the identities unlock is [`crate::vault`]'s; the OS keyring is [`crate::keyring`]'s.
//!
//! Passphrases come from the file named by `$VARS_PASSPHRASE_FILE` when it is set (one
//! trailing newline is ignored), else through the [`crate::crypto::Interaction`] the program
//! installed (the `vars` binary asks on its terminal). With neither, the error says so.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::crypto::{self, CryptoError, Identities, PassphraseSource};
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
    /// An identity file named explicitly (`--identity`, `$VARS_IDENTITY_FILE`) does not exist.
    #[error("{} (named by {named_by}) does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// `--identity` or `$VARS_IDENTITY_FILE`.
        named_by: String,
    },
    /// An identity file can be read or written by its group or by others.
    #[error(
        "{} can be read or written by its group or others (permissions {mode:04o}): an identity must be private to its owner",
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// An identity exists but cannot be parsed, read or unlocked (a passphrase missing or
    /// wrong, a plugin not installed: [`CryptoError`] names which).
    #[error(transparent)]
    Bad(#[from] CryptoError),
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
    /// A file, and whether it was named explicitly (then it must exist).
    File {
        path: PathBuf,
        named: bool,
    },
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
        out.push(Candidate::File {
            path: PathBuf::from(p),
            named: true,
        });
    }
    out.push(Candidate::Keyring);
    if let Some(path) = default_identity_path() {
        out.push(Candidate::File { path, named: false });
    }
    if let Some(h) = std::env::var_os(env::HOME) {
        out.push(Candidate::File {
            path: PathBuf::from(h).join(".ssh/id_ed25519"),
            named: false,
        });
    }
    out
}

/// Load identities: every explicit file (any error is fatal), or else the first default that
/// exists, in the order of DESIGN §4: `$VARS_IDENTITY_FILE`, the keyring entry written by
/// `vars keygen --keyring`, `~/.config/vars/identity.txt`, `~/.ssh/id_ed25519`. A file that is
/// named (`--identity`, `$VARS_IDENTITY_FILE`) must exist; a keyring that is not usable here
/// is skipped (and named in the error if nothing is found). Every file found must be private
/// to its owner ([`IdentityError::TooOpen`]).
pub fn load(explicit: &[PathBuf]) -> Result<Identities, IdentityError> {
    let mut ids = Identities::default();
    if !explicit.is_empty() {
        for p in explicit {
            read_into(&mut ids, p, Some("--identity"))?;
        }
        return Ok(ids);
    }
    let mut tried: Vec<String> = vec!["--identity".into()];
    if std::env::var_os(env::IDENTITY_FILE).is_none_or(|p| p.is_empty()) {
        tried.push(format!("${}", env::IDENTITY_FILE));
    }
    let named_by = format!("${}", env::IDENTITY_FILE);
    for c in candidates() {
        match c {
            Candidate::File { path, named } => {
                let named = named.then_some(named_by.as_str());
                if named.is_some() || path.exists() {
                    read_into(&mut ids, &path, named)?;
                    return Ok(ids);
                }
                tried.push(path.display().to_string());
            }
            Candidate::Keyring => match keyring::load_identity() {
                Ok(Some(text)) => {
                    ids.add_identity(&text, KEYRING_SOURCE, passphrase_source().as_source())?;
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

/// Load one identity file of any supported kind into `ids`, refusing one that is readable by
/// group or others.
pub fn add_file(ids: &mut Identities, path: &Path) -> Result<(), IdentityError> {
    read_into(ids, path, None)
}

fn read_into(
    ids: &mut Identities,
    path: &Path,
    named_by: Option<&str>,
) -> Result<(), IdentityError> {
    let bytes = read_private(path, named_by)?;
    ids.add_identity(
        &bytes,
        &path.display().to_string(),
        passphrase_source().as_source(),
    )?;
    Ok(())
}

/// Read an identity file that only its owner may read. The mode is that of the opened file
/// (no window between checking and reading); a symlink is followed, as ssh does.
fn read_private(path: &Path, named_by: Option<&str>) -> Result<SecretBytes, IdentityError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| {
            IdentityError::Bad(CryptoError::Io(IoError {
                action,
                path: path.to_path_buf(),
                source,
            }))
        }
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match named_by {
                Some(by) => IdentityError::Missing {
                    path: path.to_path_buf(),
                    named_by: by.to_owned(),
                },
                None => io("read")(e),
            });
        }
        Err(e) => return Err(io("read")(e)),
    };
    let meta = file.metadata().map_err(io("read"))?;
    if meta.is_dir() {
        return Err(IdentityError::Bad(CryptoError::BadIdentity {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        }));
    }
    let mode = meta.permissions().mode();
    // ssh's rule (`UNPROTECTED PRIVATE KEY FILE`): no bit for group or others.
    if mode & 0o077 != 0 {
        return Err(IdentityError::TooOpen {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    // Sized up front, so that reading does not reallocate (and leave copies behind).
    let size = usize::try_from(meta.len()).unwrap_or(0);
    let mut buf = Vec::with_capacity(size + 1);
    let read = file.read_to_end(&mut buf);
    // Whatever was read is in a zeroizing buffer before anything can fail.
    let bytes = SecretBytes::new(buf);
    read.map_err(io("read"))?;
    Ok(bytes)
}

/// `$VARS_PASSPHRASE_FILE`, if set.
struct PassphraseFile(Option<PathBuf>);

fn passphrase_source() -> PassphraseFile {
    PassphraseFile(
        std::env::var_os(env::PASSPHRASE_FILE)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from),
    )
}

impl PassphraseFile {
    fn as_source(&self) -> PassphraseSource<'_> {
        match &self.0 {
            Some(p) => PassphraseSource::File(p),
            None => PassphraseSource::Ask,
        }
    }
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
    fn a_file_readable_by_group_or_others_is_refused_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.txt");
        let (text, _) = crypto::new_identity();
        std::fs::write(&path, text.expose()).unwrap();
        for bad in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = add_file(&mut Identities::default(), &path).unwrap_err();
            match &err {
                IdentityError::TooOpen { mode, .. } => assert_eq!(*mode, bad),
                other => panic!("{bad:o}: unexpected {other}"),
            }
            assert!(err.to_string().contains(&format!("{bad:04o}")), "{err}");
        }
        for fine in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(fine)).unwrap();
            add_file(&mut Identities::default(), &path).unwrap();
        }
    }

    #[test]
    fn a_named_identity_that_does_not_exist_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let Err(err) = read_private(&missing, Some("--identity")) else {
            panic!("read a missing file");
        };
        assert!(matches!(err, IdentityError::Missing { .. }));
        let Err(dir) = read_private(dir.path(), Some("--identity")) else {
            panic!("read a directory");
        };
        assert!(dir.to_string().contains("is a directory"), "{dir}");
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }
}
