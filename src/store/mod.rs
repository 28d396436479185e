//! The `vars/` tree on disk (DESIGN §3): where each instance, manifest and key lives, reading
//! them back, the atomic swap of a whole instance directory, crash-leftover recovery, and the
//! lock that keeps two `vars` processes from writing at once.
//!
//! How instance directories are replaced atomically, and how [`Store::recover`] repairs what
//! a crash interrupted, is described in `src/store/swap.rs`.

use std::fs::{self, File};
use std::path::PathBuf;

use crate::fs_util::{self, IoContext as _, IoError};
use crate::meta::{self, Manifest, Meta};
use crate::model::InstanceId;

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
    /// A `meta.json` or `manifest.json` is not valid.
    #[error("{} is damaged: {reason}", path.display())]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The store directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// Its path.
    pub dir: PathBuf,
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

pub mod layout;
mod swap;

use swap::{OLD, REMOVING, SPARE_PREFIX};

/// What vars writes to `vars/.gitignore`: the lock and swap leftovers are never committed.
const GITIGNORE: &str = "# written by vars: never commit the lock or half-written instances\n.lock\n.vars-swap-*\n.*.old\n.*.removing\n.vars-tmp-*\n";

impl Store {
    /// The store at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// An instance's directory.
    pub fn instance_dir(&self, id: &InstanceId) -> PathBuf {
        self.dir.join(id.rel_path())
    }

    /// `keys/vault.pub`.
    pub fn vault_pub_path(&self) -> PathBuf {
        self.dir.join("keys/vault.pub")
    }

    /// `keys/vault.age`.
    pub fn vault_age_path(&self) -> PathBuf {
        self.dir.join("keys/vault.age")
    }

    /// `machines/<m>/manifest.json` or `users/<u>/manifest.json`.
    pub fn manifest_path(&self, kind: &str, name: &str) -> PathBuf {
        let group = if kind == "machine" {
            "machines"
        } else {
            "users"
        };
        self.dir.join(group).join(name).join("manifest.json")
    }

    /// Take the store's write lock, failing at once if another process has it.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        fs_util::create_dir_all(&self.dir)?;
        let gitignore = self.dir.join(".gitignore");
        // Written when missing, and rewritten when an older vars wrote other patterns.
        let current = fs::read(&gitignore).ok();
        let ours = current
            .as_deref()
            .is_none_or(|c| c.starts_with(b"# written by vars"));
        if ours && current.as_deref() != Some(GITIGNORE.as_bytes()) {
            fs_util::write_atomic(&gitignore, GITIGNORE.as_bytes(), 0o644)?;
        }
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at("open", &path)?;
        match file.try_lock() {
            Ok(()) => Ok(StoreLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
            Err(fs::TryLockError::Error(e)) => Err(StoreError::Io(IoError {
                action: "lock",
                path,
                source: e,
            })),
        }
    }

    /// Read an instance's `meta.json`; `None` when the instance does not exist.
    pub fn read_meta(&self, id: &InstanceId) -> Result<Option<Meta>, StoreError> {
        let path = self.instance_dir(id).join("meta.json");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(IoError {
                    action: "read",
                    path,
                    source: e,
                }
                .into());
            }
        };
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadMeta {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if meta.format != meta::META_FORMAT {
            return Err(StoreError::BadMeta {
                path,
                reason: format!(
                    "format {} is not supported (expected {})",
                    meta.format,
                    meta::META_FORMAT
                ),
            });
        }
        Ok(Some(meta))
    }

    /// Read a manifest; `None` when missing.
    pub fn read_manifest(&self, kind: &str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.manifest_path(kind, name);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IoError {
                action: "read",
                path,
                source: e,
            }
            .into()),
        }
    }

    /// Write a manifest atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let path = self.manifest_path(&manifest.kind, &manifest.name);
        fs_util::write_atomic(&path, &meta::to_json(manifest), 0o644)?;
        Ok(())
    }

    /// The stored file of an instance: `<file>.age` for secrets, `<file>` for public files.
    pub fn file_path(&self, id: &InstanceId, file: &str, secret: bool) -> PathBuf {
        let dir = self.instance_dir(id);
        if secret {
            dir.join(format!("{file}.age"))
        } else {
            dir.join(file)
        }
    }

    /// Finish or roll back swaps a crash interrupted, anywhere in the store. Returns the
    /// directories it repaired.
    pub fn recover(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut repaired = Vec::new();
        if !self.dir.is_dir() {
            return Ok(repaired);
        }
        let mut parents = vec![self.dir.clone(), self.dir.join("shared")];
        for group in ["machines", "users"] {
            parents.push(self.dir.join(group));
            if let Ok(rd) = fs::read_dir(self.dir.join(group)) {
                parents.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_dir()),
                );
            }
        }
        for parent in parents {
            let Ok(rd) = fs::read_dir(&parent) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            names.sort();
            for entry in names {
                let path = parent.join(&entry);
                if entry.starts_with(fs_util::TMP_PREFIX) {
                    // A manifest (or other file) write that was killed before its rename.
                    fs::remove_file(&path).at("remove", &path)?;
                    repaired.push(path);
                    continue;
                }
                if entry.starts_with(SPARE_PREFIX) {
                    // Spares never hold live content: staged and not swapped in, or old.
                    fs_util::remove_dir_all_if_exists(&path)?;
                    repaired.push(path);
                    continue;
                }
                let Some(rest) = entry.strip_prefix('.') else {
                    continue;
                };
                let Some((name, kind)) = rest.rsplit_once('.') else {
                    continue;
                };
                let dir = parent.join(name);
                match kind {
                    REMOVING => fs_util::remove_dir_all_if_exists(&path)?,
                    // A swap without exchange, interrupted after moving the old content aside:
                    // put it back unless the new content made it to `D`.
                    OLD if dir.exists() => fs_util::remove_dir_all_if_exists(&path)?,
                    OLD => {
                        fs::rename(&path, &dir).at("restore", &dir)?;
                        fs_util::sync_dir(&parent)?;
                    }
                    _ => continue,
                }
                repaired.push(dir);
            }
        }
        Ok(repaired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_is_ours_to_update_but_not_the_users() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let path = t.path().join(".gitignore");
        fs::write(&path, "# written by vars: older patterns\n.*.staging\n").unwrap();
        drop(store.lock().unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), GITIGNORE);
        fs::write(&path, "mine\n").unwrap();
        drop(store.lock().unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "mine\n");
    }

    #[test]
    fn second_lock_fails() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let _l = store.lock().unwrap();
        assert!(matches!(store.lock(), Err(StoreError::Locked { .. })));
    }
}
