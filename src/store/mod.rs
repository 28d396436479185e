//! The `vars/` tree on disk (DESIGN §3): where each instance, manifest and key lives, reading
//! them back, the atomic swap of a whole instance directory, crash-leftover recovery, and the
//! lock that keeps two `vars` processes from writing at once.
//!
//! The store is untrusted input (anyone who gets a commit in controls every byte of it), so
//! all of its I/O goes through one [`Dir`] handle, opened beneath the repository root without
//! following links, and nothing below it follows a link either ([`crate::fs_util::Dir`]). Names
//! come from [`layout`]; [`Store::instances`] is the one walk of the tree that `check`,
//! `rekey` and recovery share.
//!
//! How instance directories are replaced atomically, and how [`Store::recover`] repairs what
//! a crash interrupted, is described in `src/store/swap.rs`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::fs_util::{self, Create, Dir, Entry, IoError, Kind};
use crate::meta::{self, Manifest, Meta};
use crate::model::{InstanceId, Scope};
use crate::spec::Backend;

pub mod layout;
mod swap;

use layout::PrincipalKind;
pub(crate) use swap::is_leftover;

/// Errors reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Another vars process holds the lock.
    #[error("another vars process is writing {}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A `meta.json`, `manifest.json` or key file is not valid, or is not a regular file.
    #[error("{} is damaged: {reason}", path.display())]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    fn bad(path: PathBuf, reason: impl Into<String>) -> Self {
        StoreError::BadMeta {
            path,
            reason: reason.into(),
        }
    }
}

/// A file of `keys/` (DESIGN §4 and `docs/design-notes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    /// `keys/vault.pub`: the vault recipient.
    VaultPub,
    /// `keys/vault.age`: the vault identity, encrypted to the admins.
    VaultAge,
    /// `keys/vault.json`: which admins `vault.age` is wrapped to.
    VaultJson,
    /// `keys/next.pub`: the vault recipient being rotated in.
    NextPub,
    /// `keys/next.age`: the vault identity being rotated in.
    NextAge,
}

impl KeyFile {
    /// Every key file, in the order `keys/` lists them.
    pub const ALL: [KeyFile; 5] = [
        KeyFile::NextAge,
        KeyFile::NextPub,
        KeyFile::VaultAge,
        KeyFile::VaultJson,
        KeyFile::VaultPub,
    ];

    /// Whether the file is encrypted (`vault.age`, `next.age`) rather than public.
    pub fn is_encrypted(self) -> bool {
        matches!(self, KeyFile::VaultAge | KeyFile::NextAge)
    }

    /// The file name inside `keys/`.
    pub fn name(self) -> &'static str {
        match self {
            KeyFile::VaultPub => "vault.pub",
            KeyFile::VaultAge => "vault.age",
            KeyFile::VaultJson => "vault.json",
            KeyFile::NextPub => "next.pub",
            KeyFile::NextAge => "next.age",
        }
    }

    /// `keys/<name>`, relative to the store.
    pub fn rel(self) -> String {
        format!("{}/{}", layout::KEYS_DIR, self.name())
    }
}

/// Where the store is and how it is reached.
#[derive(Debug)]
enum Place {
    /// `rel` beneath the repository root: no component of `rel` may be a link (DESIGN §3).
    Beneath { repo: PathBuf, rel: PathBuf },
    /// A path the person named (`--store DIR`, tests): links in it are followed, none below.
    Path,
}

/// The store directory.
#[derive(Debug)]
pub struct Store {
    /// Its path, for messages (all I/O goes through the handle).
    pub dir: PathBuf,
    place: Place,
    /// Which secret files this store writes (`<file>.age` or `<file>.sops`).
    backend: Backend,
    /// The open store directory, once it exists.
    root: OnceLock<Dir>,
    /// Where this machine keeps what it knows about stores (outside any repository):
    /// `$XDG_STATE_HOME/vars`, default `~/.local/state/vars`; `None` without a home.
    state_dir: Option<PathBuf>,
}

/// Held while writing; released on drop.
pub struct StoreLock {
    _file: File,
}

/// One file to write into an instance directory.
pub struct StagedFile {
    /// Name inside the directory (`key.age`, `key.pub`, `meta.json`).
    pub name: String,
    /// Content (ciphertext or public bytes: never plaintext secrets).
    pub bytes: Vec<u8>,
}

/// An instance directory found in the store, with its entries.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    /// Which instance the directory is.
    pub id: InstanceId,
    /// What is in it, sorted by name (nothing followed).
    pub entries: Vec<Entry>,
}

/// Something in the store that is neither an instance, a manifest, the key directory nor
/// vars' own bookkeeping: `check` reports each (a symlink, a stray file, an invalid name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// Its path relative to the store (lossy if not UTF-8).
    pub rel: String,
    /// What it is.
    pub kind: Kind,
}

/// The store's tree: [`Store::instances`].
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Instance directories, in path order.
    pub instances: Vec<StoredInstance>,
    /// Everything else that should not be there.
    pub strays: Vec<Stray>,
    /// vars' own transient names (`.vars-swap-*`, `.vars-tmp-*`, `.D.old`, `.D.removing`)
    /// still there: left by a crash recovery could not repair, or committed by someone.
    pub leftovers: Vec<Stray>,
}

/// What vars writes to `vars/.gitignore`: the lock and swap leftovers are never committed.
const GITIGNORE: &str = "# written by vars: never commit the lock or half-written instances\n.lock\n.vars-swap-*\n.*.old\n.*.removing\n.vars-tmp-*\n";
const GITIGNORE_FILE: &str = ".gitignore";
const LOCK_FILE: &str = ".lock";

/// Largest `meta.json`, manifest or key file read: they are small; a huge one is an attack.
const MAX_BOOKKEEPING: u64 = 16 * 1024 * 1024;

/// Largest stored file read: an output's cap, twice over for the encryption's overhead
/// (armor, sops' base64 inside JSON).
const MAX_STORED: u64 = crate::sandbox::MAX_OUTPUT_BYTES * 2;

impl Store {
    /// The store `rel` beneath the repository `repo` (the directory of vars.yaml). `rel` must
    /// be relative and plain (the model checks it); none of its components may be a link.
    pub fn beneath(repo: &Path, rel: &Path, backend: Backend) -> Self {
        Store {
            dir: repo.join(rel),
            place: Place::Beneath {
                repo: repo.to_path_buf(),
                rel: rel.to_path_buf(),
            },
            backend,
            root: OnceLock::new(),
            state_dir: default_state_dir(),
        }
    }

    /// The store at `dir`, a path the person named (`--store DIR`); age backend.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store {
            dir: dir.into(),
            place: Place::Path,
            backend: Backend::Age,
            root: OnceLock::new(),
            state_dir: default_state_dir(),
        }
    }

    /// Keep this machine's knowledge about the store (the vault recipient last seen) in
    /// `dir` instead of the default (tests; a host with an unusual home).
    pub fn with_state_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.state_dir = dir;
        self
    }

    /// Where this machine keeps what it knows about stores; `None` when it cannot.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// The backend whose file names this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The open store directory; `None` while the store does not exist.
    pub(crate) fn root(&self) -> Result<Option<&Dir>, StoreError> {
        if let Some(d) = self.root.get() {
            return Ok(Some(d));
        }
        let opened = match &self.place {
            Place::Beneath { repo, rel } => Dir::open(repo)?.open_dir(rel)?,
            Place::Path => match Dir::open(&self.dir) {
                Ok(d) => Some(d),
                Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            },
        };
        Ok(opened.map(|d| self.root.get_or_init(|| d)))
    }

    /// The open store directory, created (with its parents) when missing.
    pub(crate) fn ensure_root(&self) -> Result<&Dir, StoreError> {
        if let Some(d) = self.root()? {
            return Ok(d);
        }
        let created = match &self.place {
            Place::Beneath { repo, rel } => Dir::open(repo)?.create_dir_all(rel)?,
            Place::Path => {
                fs_util::create_dir_all(&self.dir)?;
                Dir::open(&self.dir)?
            }
        };
        Ok(self.root.get_or_init(|| created))
    }

    /// An instance's directory (for messages; I/O goes through the store handle).
    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.dir.join(id.rel_path())
    }

    /// Where a key file is (for messages).
    pub fn key_path(&self, key: KeyFile) -> PathBuf {
        self.dir.join(key.rel())
    }

    /// `keys/vault.pub` (for messages).
    pub fn vault_pub_path(&self) -> PathBuf {
        self.key_path(KeyFile::VaultPub)
    }

    /// `keys/vault.age` (for messages).
    pub fn vault_age_path(&self) -> PathBuf {
        self.key_path(KeyFile::VaultAge)
    }

    /// A manifest's path relative to the store.
    pub fn manifest_rel(&self, kind: PrincipalKind, name: &str) -> String {
        layout::manifest_rel(kind, name)
    }

    /// A manifest's path (for messages).
    pub fn manifest_path(&self, kind: PrincipalKind, name: &str) -> PathBuf {
        self.dir.join(self.manifest_rel(kind, name))
    }

    /// The name a declared file is stored under in its instance directory.
    pub fn stored_name(&self, file: &str, secret: bool) -> String {
        layout::stored_name(file, secret, self.backend)
    }

    /// A stored file's path relative to the store: `<instance>/<file>.age` for secrets,
    /// `<instance>/<file>` for public files.
    pub fn file_rel(&self, id: &InstanceId, file: &str, secret: bool) -> String {
        format!("{id}/{}", self.stored_name(file, secret))
    }

    /// A stored file's path (for messages).
    pub fn file_path(&self, id: &InstanceId, file: &str, secret: bool) -> PathBuf {
        self.dir.join(self.file_rel(id, file, secret))
    }

    /// Read a file below the store without following links; `None` when it (or the store)
    /// does not exist. A link or a special file is an error.
    pub fn read_rel(&self, rel: &str, cap: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(root) = self.root()? else {
            return Ok(None);
        };
        Ok(root.read_capped(rel, cap)?)
    }

    /// A stored file of an instance (ciphertext or public bytes); `None` when missing. A
    /// secret is read as [`Store::read_secret`] reads it.
    pub fn read_file(
        &self,
        id: &InstanceId,
        file: &str,
        secret: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if secret {
            return Ok(self.read_secret(id, file)?.map(|(_, bytes)| bytes));
        }
        self.read_rel(&self.file_rel(id, file, false), MAX_STORED)
    }

    /// A stored secret and the backend whose name it has: `<file>.age` or `<file>.sops` as
    /// this store's backend names it, else the other backend's name, which a store being
    /// converted between backends (`vars rekey --backend`) still has for the instances not
    /// converted yet. `None` when neither exists.
    pub fn read_secret(
        &self,
        id: &InstanceId,
        file: &str,
    ) -> Result<Option<(Backend, Vec<u8>)>, StoreError> {
        for backend in [self.backend, layout::other_backend(self.backend)] {
            let rel = format!("{id}/{}", layout::stored_name(file, true, backend));
            if let Some(bytes) = self.read_rel(&rel, MAX_STORED)? {
                return Ok(Some((backend, bytes)));
            }
        }
        Ok(None)
    }

    /// What a path below the store is (not following it); `None` when missing.
    pub fn kind(&self, rel: &str) -> Result<Option<Kind>, StoreError> {
        match self.root()? {
            None => Ok(None),
            Some(root) => Ok(root.kind(rel)?),
        }
    }

    /// A small bookkeeping file; a link or special file there is damage, not an I/O error,
    /// so the planner and `check` can report it like any other tampering.
    fn read_bookkeeping(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.read_rel(rel, MAX_BOOKKEEPING) {
            Err(StoreError::Io(e)) if fs_util::is_link_refused(&e) => Err(StoreError::bad(
                self.dir.join(rel),
                "it, or a directory on its way, is a symbolic link (vars never follows links in the store)",
            )),
            Err(StoreError::Io(e)) if e.source.kind() == std::io::ErrorKind::Other => {
                Err(StoreError::bad(self.dir.join(rel), e.source.to_string()))
            }
            other => other,
        }
    }

    /// Read a key file; `None` when missing.
    pub fn read_key(&self, key: KeyFile) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_bookkeeping(&key.rel())
    }

    /// Take the store's write lock, failing at once if another process has it. Creates the
    /// store (and its `.gitignore`) when missing.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let root = self.ensure_root()?;
        // Written when missing, and rewritten when an older vars wrote other patterns.
        let current = match root.read_capped(GITIGNORE_FILE, MAX_BOOKKEEPING) {
            Ok(c) => c,
            Err(e) if fs_util::is_link_refused(&e) => {
                return Err(StoreError::bad(
                    root.display(GITIGNORE_FILE),
                    "is a symbolic link (vars never follows links in the store)",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let ours = current
            .as_deref()
            .is_none_or(|c| c.starts_with(b"# written by vars"));
        if ours && current.as_deref() != Some(GITIGNORE.as_bytes()) {
            root.write_atomic(GITIGNORE_FILE, GITIGNORE.as_bytes(), 0o644)?;
        }
        let path = root.display(LOCK_FILE);
        let file = root.create_file(LOCK_FILE, 0o644, Create::Reuse)?;
        match file.try_lock() {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Io(IoError {
                action: "lock",
                path,
                source,
            })),
        }
    }

    /// Read an instance's `meta.json`; `None` when the instance does not exist. A
    /// `meta.json` that is not valid, or names a file outside its instance, is
    /// [`StoreError::BadMeta`].
    pub fn read_meta(&self, id: &InstanceId) -> Result<Option<Meta>, StoreError> {
        let rel = format!("{id}/{}", layout::META_FILE);
        let Some(bytes) = self.read_bookkeeping(&rel)? else {
            return Ok(None);
        };
        let path = self.dir.join(&rel);
        let meta: Meta = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::bad(path.clone(), e.to_string()))?;
        if meta.format != meta::META_FORMAT {
            return Err(StoreError::bad(
                path,
                format!(
                    "format {} is not supported (expected {})",
                    meta.format,
                    meta::META_FORMAT
                ),
            ));
        }
        // File names are joined to the instance directory: each must be a plain name of it.
        if let Some(bad) = meta
            .files
            .keys()
            .find(|f| crate::model::check_file_name(f).is_err())
        {
            return Err(StoreError::bad(
                path,
                format!(
                    "it names the file {:?}, which is not a file name of an instance",
                    crate::text::escape(bad)
                ),
            ));
        }
        Ok(Some(meta))
    }

    /// Read a manifest; `None` when missing.
    pub fn read_manifest(
        &self,
        kind: PrincipalKind,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_bookkeeping(&self.manifest_rel(kind, name))
    }

    /// Write a manifest atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let rel = self.manifest_rel(manifest.kind, &manifest.name);
        self.ensure_root()?
            .write_atomic(&rel, &meta::to_json(manifest), 0o644)?;
        Ok(())
    }

    /// Walk the store once: every instance directory with its entries, and everything that
    /// does not belong (links, stray files, directories with invalid names). Links are
    /// reported, never followed.
    pub fn instances(&self) -> Result<Listing, StoreError> {
        let mut listing = Listing::default();
        let Some(root) = self.root()? else {
            return Ok(listing);
        };
        let stray = |listing: &mut Listing, rel: String, kind: Kind| {
            listing.strays.push(Stray { rel, kind });
        };
        for top in root.entries()? {
            let name = top.name.to_string_lossy().into_owned();
            let group = match (name.as_str(), top.kind) {
                (layout::MACHINES_DIR | layout::USERS_DIR | layout::SHARED_DIR, Kind::Dir) => {
                    name.clone()
                }
                (layout::KEYS_DIR, Kind::Dir) => {
                    let keys = root.open_dir(layout::KEYS_DIR)?.expect("listed");
                    for e in keys.entries()? {
                        let n = e.name.to_string_lossy();
                        let known = KeyFile::ALL.iter().any(|k| k.name() == n);
                        if !known || e.kind != Kind::File {
                            stray(&mut listing, format!("{}/{n}", layout::KEYS_DIR), e.kind);
                        }
                    }
                    continue;
                }
                (GITIGNORE_FILE | LOCK_FILE, Kind::File) => continue,
                (n, kind) if is_leftover(n) => {
                    listing.leftovers.push(Stray {
                        rel: name.clone(),
                        kind,
                    });
                    continue;
                }
                _ => {
                    stray(&mut listing, name, top.kind);
                    continue;
                }
            };
            let dir = root.open_dir(&group)?.expect("listed");
            for owner in dir.entries()? {
                let oname = owner.name.to_string_lossy().into_owned();
                let rel = format!("{group}/{oname}");
                if is_leftover(&oname) {
                    listing.leftovers.push(Stray {
                        rel,
                        kind: owner.kind,
                    });
                    continue;
                }
                if owner.kind != Kind::Dir || crate::model::check_name(&oname).is_err() {
                    stray(&mut listing, rel, owner.kind);
                    continue;
                }
                if group == layout::SHARED_DIR {
                    self.push_instance(&mut listing, &dir, &oname, rel)?;
                    continue;
                }
                let odir = dir.open_dir(&oname)?.expect("listed");
                for inst in odir.entries()? {
                    let iname = inst.name.to_string_lossy().into_owned();
                    let irel = format!("{rel}/{iname}");
                    match inst.kind {
                        Kind::File if iname == layout::MANIFEST_FILE => {}
                        kind if is_leftover(&iname) => {
                            listing.leftovers.push(Stray { rel: irel, kind });
                        }
                        Kind::Dir if crate::model::check_name(&iname).is_ok() => {
                            self.push_instance(&mut listing, &odir, &iname, irel)?;
                        }
                        kind => stray(&mut listing, irel, kind),
                    }
                }
            }
        }
        Ok(listing)
    }

    fn push_instance(
        &self,
        listing: &mut Listing,
        parent: &Dir,
        name: &str,
        rel: String,
    ) -> Result<(), StoreError> {
        let id = layout::parse_instance_rel(&rel).expect("names were checked");
        let entries = parent.open_dir(name)?.expect("listed").entries()?;
        listing.instances.push(StoredInstance { id, entries });
        Ok(())
    }

    /// The instance directories of one scope's owner found in the store (e.g. a removed
    /// user's), without listing the whole store.
    pub fn instances_of(&self, scope: &Scope) -> Result<Vec<InstanceId>, StoreError> {
        let Some(root) = self.root()? else {
            return Ok(Vec::new());
        };
        let rel = match scope {
            Scope::Shared => layout::SHARED_DIR.to_owned(),
            Scope::Machine(m) => format!("{}/{m}", layout::MACHINES_DIR),
            Scope::User(u) => format!("{}/{u}", layout::USERS_DIR),
        };
        let Some(dir) = root.open_dir(&rel)? else {
            return Ok(Vec::new());
        };
        Ok(dir
            .entries()?
            .into_iter()
            .filter(|e| e.kind == Kind::Dir)
            .filter_map(|e| layout::parse_instance_rel(&format!("{rel}/{}", e.name_str()?)))
            .collect())
    }
}

/// `$XDG_STATE_HOME/vars`, else `~/.local/state/vars`.
fn default_state_dir() -> Option<PathBuf> {
    let state = std::env::var_os(crate::env::XDG_STATE_HOME)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os(crate::env::HOME)
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(state.join("vars"))
}

#[cfg(test)]
mod tests;
