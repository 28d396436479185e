//! The `vars/` tree on disk (DESIGN §3): where each instance, manifest and key lives, reading
//! them back, the atomic swap of a whole instance directory, crash-leftover recovery, and the
//! lock that keeps two `vars` processes from writing at once.
//!
//! The swap protocol, per directory `D` in parent `P`:
//! 1. write every file into `P/.D.staging/`, fsync each, fsync the directory;
//! 2. rename `.D.staging` → `.D.ready` (the new content is now complete);
//! 3. rename `D` → `.D.old` (if `D` exists), rename `.D.ready` → `D`, fsync `P`;
//! 4. remove `.D.old`.
//!
//! [`Store::recover`] finishes or rolls back an interrupted swap: a `.D.ready` is complete and
//! wins; `.D.staging` is always discarded; a `.D.old` alone is an interrupted removal
//! ([`Store::remove_dir`]: rename to `.D.old`, then delete) and is finished.
//! So after a crash at any point, `D` is entirely old or entirely new.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

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

const STAGING: &str = "staging";
const READY: &str = "ready";
const OLD: &str = "old";

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
        if !gitignore.exists() {
            fs_util::write_atomic(&gitignore, b"# written by vars: never commit the lock or half-written instances\n.lock\n.*.staging\n.*.ready\n.*.old\n.vars-tmp-*\n", 0o644)?;
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

    /// Replace the directory `dir` with exactly `files`, atomically (see the module docs).
    pub fn swap_dir(&self, dir: &Path, files: &[StagedFile]) -> Result<(), StoreError> {
        let (parent, name) = split(dir);
        fs_util::create_dir_all(&parent)?;
        let staging = side(&parent, &name, STAGING);
        let ready = side(&parent, &name, READY);
        fs_util::remove_dir_all_if_exists(&staging)?;
        fs::create_dir(&staging).at("create directory", &staging)?;
        for f in files {
            fs_util::write_new(&staging.join(&f.name), &f.bytes, 0o644)?;
        }
        fs_util::sync_dir(&staging)?;
        // No fsync of the parent here: if this rename is lost in a crash, recovery finds the
        // staging dir, discards it, and the old instance stands. finish_swap syncs the parent.
        fs::rename(&staging, &ready).at("rename into place", &ready)?;
        self.finish_swap(&parent, &name)
    }

    /// Step 1 without its fsyncs, for batches: write `files` into `.D.staging/`. Follow with
    /// [`Store::commit_staged`] for every staged directory.
    pub fn stage(&self, dir: &Path, files: &[StagedFile]) -> Result<(), StoreError> {
        let (parent, name) = split(dir);
        let staging = side(&parent, &name, STAGING);
        // Recovery ran before any staging, so the directory is normally absent: try first.
        if let Err(e) = fs::create_dir(&staging) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(IoError {
                    action: "create directory",
                    path: staging,
                    source: e,
                }
                .into());
            }
            fs_util::remove_dir_all_if_exists(&staging)?;
            fs::create_dir(&staging).at("create directory", &staging)?;
        }
        for f in files {
            let path = staging.join(&f.name);
            fs::write(&path, &f.bytes).at("write", &path)?;
        }
        Ok(())
    }

    /// Swap in many staged directories: one file-system sync makes every staged file durable,
    /// then each `.D.staging` becomes `.D.ready` and is swapped in; a second sync makes the
    /// renames durable before the old copies are deleted. The same crash guarantees as
    /// [`Store::swap_dir`] hold for each directory.
    pub fn commit_staged(&self, dirs: &[PathBuf]) -> Result<(), StoreError> {
        if dirs.is_empty() {
            return Ok(());
        }
        use rayon::prelude::*;
        // A few directories: fsync exactly their files (syncfs would flush whatever else is
        // dirty on the file system). Many: one syncfs is far cheaper than thousands of fsyncs.
        let few = dirs.len() <= 32;
        if few {
            for dir in dirs {
                let (parent, name) = split(dir);
                let staging = side(&parent, &name, STAGING);
                for entry in fs::read_dir(&staging).at("list", &staging)? {
                    let path = entry.at("list", &staging)?.path();
                    File::open(&path)
                        .and_then(|f| f.sync_all())
                        .at("sync", &path)?;
                }
                fs_util::sync_dir(&staging)?;
            }
        } else {
            self.sync_fs()?;
        }
        // Each directory's renames stay in order; different directories proceed in parallel
        // (thousands of renames and deletions are latency, not work).
        dirs.par_iter()
            .try_for_each(|dir| -> Result<(), StoreError> {
                let (parent, name) = split(dir);
                let ready = side(&parent, &name, READY);
                fs::rename(side(&parent, &name, STAGING), &ready)
                    .at("rename into place", &ready)?;
                let old = side(&parent, &name, OLD);
                // Move the current instance aside; it may not exist (a new instance), and a
                // stale `.old` (normally removed by recovery) is cleared and the move retried.
                match fs::rename(dir, &old) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(_) => {
                        fs_util::remove_dir_all_if_exists(&old)?;
                        fs::rename(dir, &old).at("move aside", dir)?;
                    }
                }
                fs::rename(&ready, dir).at("rename into place", dir)?;
                Ok(())
            })?;
        if few {
            let parents: std::collections::BTreeSet<PathBuf> =
                dirs.iter().map(|d| split(d).0).collect();
            for p in parents {
                fs_util::sync_dir(&p)?;
            }
        } else {
            self.sync_fs()?;
        }
        dirs.par_iter().try_for_each(|dir| {
            let (parent, name) = split(dir);
            fs_util::remove_dir_all_if_exists(&side(&parent, &name, OLD)).map_err(StoreError::from)
        })
    }

    /// Flush everything written to the store's file system (syncfs(2)).
    fn sync_fs(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.dir).at("open", &self.dir)?;
        rustix::fs::syncfs(&dir).map_err(|e| IoError {
            action: "sync the file system of",
            path: self.dir.clone(),
            source: e.into(),
        })?;
        Ok(())
    }

    /// Step 3 and 4 of the protocol, also used by recovery.
    fn finish_swap(&self, parent: &Path, name: &str) -> Result<(), StoreError> {
        let dir = parent.join(name);
        let ready = side(parent, name, READY);
        let old = side(parent, name, OLD);
        if dir.exists() {
            fs_util::remove_dir_all_if_exists(&old)?;
            fs::rename(&dir, &old).at("move aside", &dir)?;
        }
        fs::rename(&ready, &dir).at("rename into place", &dir)?;
        fs_util::sync_dir(parent)?;
        fs_util::remove_dir_all_if_exists(&old)?;
        Ok(())
    }

    /// Remove an instance directory (atomically: renamed aside first).
    pub fn remove_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let (parent, name) = split(dir);
        if !dir.exists() {
            return Ok(());
        }
        let old = side(&parent, &name, OLD);
        fs_util::remove_dir_all_if_exists(&old)?;
        fs::rename(dir, &old).at("move aside", dir)?;
        fs_util::sync_dir(&parent)?;
        fs_util::remove_dir_all_if_exists(&old)?;
        Ok(())
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
                if entry.starts_with(fs_util::TMP_PREFIX) {
                    // A manifest (or other file) write that was killed before its rename.
                    let path = parent.join(&entry);
                    fs::remove_file(&path).at("remove", &path)?;
                    repaired.push(path);
                    continue;
                }
                let Some(rest) = entry.strip_prefix('.') else {
                    continue;
                };
                let Some((name, kind)) = rest.rsplit_once('.') else {
                    continue;
                };
                let path = parent.join(&entry);
                match kind {
                    STAGING => fs_util::remove_dir_all_if_exists(&path)?,
                    READY => self.finish_swap(&parent, name)?,
                    OLD => {
                        let dir = parent.join(name);
                        // Without a `.D.ready` beside it, a lone `.D.old` is a removal
                        // ([`Store::remove_dir`]) that may have deleted part of it already:
                        // finish it rather than restore a half-deleted directory.
                        let removal = !side(&parent, name, READY).exists();
                        if dir.exists() || removal {
                            fs_util::remove_dir_all_if_exists(&path)?;
                        } else {
                            fs::rename(&path, &dir).at("restore", &dir)?;
                            fs_util::sync_dir(&parent)?;
                        }
                    }
                    _ => continue,
                }
                repaired.push(parent.join(name));
            }
        }
        Ok(repaired)
    }
}

fn split(dir: &Path) -> (PathBuf, String) {
    let parent = dir
        .parent()
        .expect("instance dirs have a parent")
        .to_path_buf();
    let name = dir
        .file_name()
        .expect("instance dirs have a name")
        .to_string_lossy()
        .into_owned();
    (parent, name)
}

fn side(parent: &Path, name: &str, kind: &str) -> PathBuf {
    parent.join(format!(".{name}.{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(v: &str) -> Vec<StagedFile> {
        vec![
            StagedFile {
                name: "a".into(),
                bytes: v.as_bytes().to_vec(),
            },
            StagedFile {
                name: "b".into(),
                bytes: v.as_bytes().to_vec(),
            },
        ]
    }

    fn content(dir: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn swap_replaces_whole_directory() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let d = t.path().join("machines/m/g");
        store.swap_dir(&d, &files("1")).unwrap();
        store
            .swap_dir(
                &d,
                &[StagedFile {
                    name: "c".into(),
                    bytes: b"2".to_vec(),
                }],
            )
            .unwrap();
        assert_eq!(content(&d), vec![("c".into(), "2".into())]);
        assert_eq!(
            fs::read_dir(t.path().join("machines/m")).unwrap().count(),
            1,
            "no leftovers"
        );
    }

    #[test]
    fn recovery_after_crash_at_each_step() {
        for step in 0..4 {
            let t = tempfile::tempdir().unwrap();
            let store = Store::new(t.path());
            let parent = t.path().join("machines/m");
            let d = parent.join("g");
            store.swap_dir(&d, &files("old")).unwrap();
            // Simulate the state a crash leaves after `step` steps of a swap to "new".
            let staging = side(&parent, "g", STAGING);
            fs::create_dir(&staging).unwrap();
            fs::write(staging.join("a"), "new").unwrap();
            if step >= 1 {
                fs::write(staging.join("b"), "new").unwrap();
                fs::rename(&staging, side(&parent, "g", READY)).unwrap();
            }
            if step >= 2 {
                fs::rename(&d, side(&parent, "g", OLD)).unwrap();
            }
            if step >= 3 {
                fs::rename(side(&parent, "g", READY), &d).unwrap();
            }
            store.recover().unwrap();
            let expect = if step == 0 { "old" } else { "new" };
            assert_eq!(
                content(&d),
                vec![("a".into(), expect.into()), ("b".into(), expect.into())],
                "step {step}"
            );
            assert_eq!(
                fs::read_dir(&parent).unwrap().count(),
                1,
                "step {step}: leftovers"
            );
        }
    }

    #[test]
    fn recovery_finishes_an_interrupted_removal() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let parent = t.path().join("users");
        store.swap_dir(&parent.join("u/g"), &files("old")).unwrap();
        // A crash in remove_dir after the rename, with part of the tree already deleted.
        fs::rename(parent.join("u"), side(&parent, "u", OLD)).unwrap();
        fs::remove_file(parent.join(".u.old/g/a")).unwrap();
        store.recover().unwrap();
        assert_eq!(
            fs::read_dir(&parent).unwrap().count(),
            0,
            "nothing half-deleted is restored"
        );
    }

    #[test]
    fn second_lock_fails() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let _l = store.lock().unwrap();
        assert!(matches!(store.lock(), Err(StoreError::Locked { .. })));
    }
}
