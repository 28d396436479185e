//! Replacing whole instance directories atomically (DESIGN §3), one at a time or thousands in a
//! batch.
//!
//! The protocol, for a directory `D`:
//! 1. the new files are written into a *spare*, a directory `.vars-swap-N` at the store root
//!    that holds nothing live;
//! 2. they are made durable: an fsync per file and of the spare, or one `syncfs` for a batch;
//! 3. `renameat2(spare, D, RENAME_EXCHANGE)` (`RENAME_SWAP` on macOS) puts the new content at
//!    `D` and the old content in the spare, in one atomic step; a new `D` is a plain rename. On
//!    a file system that cannot exchange, `D` is renamed to `.D.old` and the spare to `D`;
//! 4. the swap is made durable (fsync of both parents, or `syncfs`); only then is the spare,
//!    which now holds the old content, reused or deleted.
//!
//! A batch runs in rounds and recycles the spares one round swapped out as the next round's
//! staging directories: their files are overwritten in place, so after the first round a
//! rekey of the whole store creates and deletes no files at all, only rewrites them (creating
//! and freeing thousands of inodes is what makes a naive rotation slow on some file systems).
//!
//! [`Store::recover`] needs only three rules: a spare is deleted; a `.D.old` beside `D` is
//! deleted, and without `D` it is moved back (a fallback swap interrupted between its two
//! renames); a `.D.removing` (an interrupted [`Store::remove_dir`]) is deleted. So after a
//! crash at any moment, `D` is entirely old or entirely new.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::{StagedFile, Store, StoreError};
use crate::fs_util::{self, IoContext as _, IoError};

/// Name prefix of the spare directories at the store root.
pub(crate) const SPARE_PREFIX: &str = ".vars-swap-";
/// Suffix of an instance moved aside by a swap without exchange: `.D.old`.
pub(crate) const OLD: &str = "old";
/// Suffix of a directory being removed: `.D.removing`.
pub(crate) const REMOVING: &str = "removing";

/// Up to this many directories are made durable file by file; more with one `syncfs`, which
/// also flushes whatever else is dirty on the file system but costs the same for 10 or 10,000
/// files.
const FEW: usize = 32;
/// A batch is swapped in at most this many rounds (two syncs each)…
const ROUNDS: usize = 8;
/// …of at least this many directories.
const MIN_ROUND: usize = 64;

/// Spare names are unique within the process; the store lock excludes other processes and
/// recovery deletes what a dead one left.
static NEXT_SPARE: AtomicUsize = AtomicUsize::new(0);

/// A staging directory and whether it is known to be empty.
struct Spare {
    path: PathBuf,
    fresh: bool,
}

/// The spares of one batch: handed out for staging, given back after their round.
struct Spares<'a> {
    root: &'a Path,
    free: Mutex<Vec<Spare>>,
}

impl<'a> Spares<'a> {
    fn new(root: &'a Path) -> Self {
        Spares {
            root,
            free: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Result<Spare, IoError> {
        if let Some(spare) = self.lock().pop() {
            return Ok(spare);
        }
        let n = NEXT_SPARE.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join(format!("{SPARE_PREFIX}{n}"));
        if let Err(e) = fs::create_dir(&path) {
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e).at("create directory", &path);
            }
            fs_util::remove_dir_all_if_exists(&path)?;
            fs::create_dir(&path).at("create directory", &path)?;
        }
        Ok(Spare { path, fresh: true })
    }

    fn give_back(&self, spares: impl IntoIterator<Item = Spare>) {
        self.lock().extend(spares);
    }

    /// Delete every spare still held (their content is old or never swapped in).
    fn remove_all(self) -> Result<(), IoError> {
        let free = self.free.into_inner().unwrap_or_else(|e| e.into_inner());
        free.par_iter()
            .try_for_each(|s| fs_util::remove_dir_all_if_exists(&s.path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Spare>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// Replace the directory `dir` with exactly `files`, atomically (see the module docs).
    pub fn swap_dir(&self, dir: &Path, files: &[StagedFile]) -> Result<(), StoreError> {
        let spares = Spares::new(&self.dir);
        let result = (|| -> Result<(), StoreError> {
            let spare = spares.take()?;
            fill(&spare, files, true)?;
            let old = self.commit_round(vec![(dir.to_path_buf(), spare)], true)?;
            spares.give_back(old);
            Ok(())
        })();
        let cleanup = spares.remove_all();
        result?;
        Ok(cleanup?)
    }

    /// Replace many directories, each atomically: `stage` says which directory an item is and
    /// what it must contain (it runs in parallel on the current rayon pool). Rounds are
    /// committed on a thread of their own while the next round is staged: the syncs are waits
    /// for the disk, not work. Stops at the first error; earlier rounds are then swapped in.
    pub fn swap_many<T, E>(
        &self,
        items: &[T],
        stage: impl Fn(&T) -> Result<(PathBuf, Vec<StagedFile>), E> + Sync,
    ) -> Result<(), E>
    where
        T: Sync,
        E: From<StoreError> + Send,
    {
        let few = items.len() <= FEW;
        let round = if few {
            FEW
        } else {
            items.len().div_ceil(ROUNDS).max(MIN_ROUND)
        };
        let spares = Spares::new(&self.dir);
        let result = std::thread::scope(|scope| -> Result<(), E> {
            let (rounds, staged_rounds) = std::sync::mpsc::sync_channel(1);
            let (committed_tx, committed_rx) = std::sync::mpsc::channel();
            let spares = &spares;
            let committer = scope.spawn(move || -> Result<(), StoreError> {
                for staged in staged_rounds {
                    spares.give_back(self.commit_round(staged, few)?);
                    let _ = committed_tx.send(());
                }
                Ok(())
            });
            let mut staging = Ok(());
            for (n, chunk) in items.chunks(round).enumerate() {
                // Stage at most one round ahead of the commits: round n reuses the spares of
                // round n - 2 (and a failed commit stops the staging).
                if n >= 2 && committed_rx.recv().is_err() {
                    break;
                }
                match stage_round(chunk, &stage, spares, few) {
                    Ok(staged) => {
                        // A send fails only when the committer stopped at an error.
                        if let Err(unsent) = rounds.send(staged) {
                            spares.give_back(unsent.0.into_iter().map(|(_, spare)| spare));
                            break;
                        }
                    }
                    Err(e) => {
                        staging = Err(e);
                        break;
                    }
                }
            }
            drop(rounds);
            let committed = committer.join().expect("committing does not panic");
            staging?;
            committed.map_err(E::from)
        });
        let cleanup = spares.remove_all();
        result?;
        cleanup.map_err(|e| StoreError::from(e).into())
    }

    /// Steps 2–4 for staged spares: returns the spares now holding the old content.
    fn commit_round(
        &self,
        staged: Vec<(PathBuf, Spare)>,
        few: bool,
    ) -> Result<Vec<Spare>, StoreError> {
        if few {
            for (_, spare) in &staged {
                fs_util::sync_dir(&spare.path)?;
            }
        } else {
            self.sync_fs()?;
        }
        let old: Vec<Option<PathBuf>> = staged
            .iter()
            .map(|(dir, spare)| swap_in(&spare.path, dir, true))
            .collect::<Result<_, _>>()?;
        if few {
            let mut parents: Vec<&Path> = staged.iter().filter_map(|(d, _)| d.parent()).collect();
            parents.push(&self.dir);
            parents.sort();
            parents.dedup();
            for p in parents {
                fs_util::sync_dir(p)?;
            }
        } else {
            self.sync_fs()?;
        }
        Ok(old
            .into_iter()
            .flatten()
            .map(|path| Spare { path, fresh: false })
            .collect())
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

    /// Remove a directory atomically: renamed to `.D.removing` first, so a crash never leaves
    /// a half-deleted `D`.
    pub fn remove_dir(&self, dir: &Path) -> Result<(), StoreError> {
        if !dir.exists() {
            return Ok(());
        }
        let (parent, name) = split(dir);
        let removing = side(&parent, &name, REMOVING);
        fs_util::remove_dir_all_if_exists(&removing)?;
        fs::rename(dir, &removing).at("move aside", dir)?;
        fs_util::sync_dir(&parent)?;
        fs_util::remove_dir_all_if_exists(&removing)?;
        Ok(())
    }
}

/// Step 1 for a round of items, in parallel: each gets a spare holding its new content. On an
/// error the spares go back to the pool and the first error is returned.
fn stage_round<T, E>(
    items: &[T],
    stage: &(impl Fn(&T) -> Result<(PathBuf, Vec<StagedFile>), E> + Sync),
    spares: &Spares<'_>,
    few: bool,
) -> Result<Vec<(PathBuf, Spare)>, E>
where
    T: Sync,
    E: From<StoreError> + Send,
{
    let staged: Vec<Result<(PathBuf, Spare), E>> = items
        .par_iter()
        .map(|item| {
            let (dir, files) = stage(item)?;
            let spare = spares.take().map_err(StoreError::from)?;
            match fill(&spare, &files, few) {
                Ok(()) => Ok((dir, spare)),
                Err(e) => {
                    spares.give_back([spare]);
                    Err(StoreError::from(e).into())
                }
            }
        })
        .collect();
    let mut ready = Vec::with_capacity(staged.len());
    let mut first_error = None;
    for s in staged {
        match s {
            Ok(s) => ready.push(s),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        None => Ok(ready),
        Some(e) => {
            spares.give_back(ready.into_iter().map(|(_, spare)| spare));
            Err(e)
        }
    }
}

/// Make `spare` hold exactly `files`. A recycled spare's files are overwritten in place (no
/// truncation first: the same inodes and, for same-sized content, the same blocks).
fn fill(spare: &Spare, files: &[StagedFile], sync_each: bool) -> Result<(), IoError> {
    if !spare.fresh {
        for entry in fs::read_dir(&spare.path).at("list", &spare.path)? {
            let entry = entry.at("list", &spare.path)?;
            if files.iter().any(|f| *f.name == *entry.file_name()) {
                continue;
            }
            let path = entry.path();
            if entry.file_type().at("inspect", &path)?.is_dir() {
                fs_util::remove_dir_all_if_exists(&path)?;
            } else {
                fs::remove_file(&path).at("remove", &path)?;
            }
        }
    }
    for f in files {
        let path = spare.path.join(&f.name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .at("create", &path)?;
        file.write_all(&f.bytes).at("write", &path)?;
        if !spare.fresh {
            file.set_len(f.bytes.len() as u64).at("write", &path)?;
        }
        if sync_each {
            file.sync_all().at("sync", &path)?;
        }
    }
    Ok(())
}

/// Step 3: put `spare`'s content at `dir`. Returns where the old content is now (`None` when
/// `dir` did not exist). `exchange: false` forces the fallback (for tests).
fn swap_in(spare: &Path, dir: &Path, exchange: bool) -> Result<Option<PathBuf>, IoError> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    if exchange {
        match renameat_with(CWD, spare, CWD, dir, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(Some(spare.to_path_buf())),
            Err(Errno::NOENT) => return place_new(spare, dir).map(|()| None),
            // The file system (or kernel) cannot exchange: fall back to two renames.
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
            #[allow(unreachable_patterns)] // EOPNOTSUPP is ENOTSUP on Linux, not on macOS
            Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(io::Error::from(e)).at("swap in", dir),
        }
    }
    if !dir.exists() {
        return place_new(spare, dir).map(|()| None);
    }
    let (parent, name) = split(dir);
    let old = side(&parent, &name, OLD);
    fs_util::remove_dir_all_if_exists(&old)?;
    fs::rename(dir, &old).at("move aside", dir)?;
    fs::rename(spare, dir).at("rename into place", dir)?;
    Ok(Some(old))
}

/// A directory that did not exist yet: create its parents and rename the spare there.
fn place_new(spare: &Path, dir: &Path) -> Result<(), IoError> {
    if let Some(parent) = dir.parent() {
        fs_util::create_dir_all(parent)?;
    }
    fs::rename(spare, dir).at("rename into place", dir)
}

pub(crate) fn split(dir: &Path) -> (PathBuf, String) {
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

/// `P/.D.<kind>` beside `P/D`.
pub(crate) fn side(parent: &Path, name: &str, kind: &str) -> PathBuf {
    parent.join(format!(".{name}.{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(v: &str) -> Vec<StagedFile> {
        ["a", "b"]
            .iter()
            .map(|n| StagedFile {
                name: n.to_string(),
                bytes: v.as_bytes().to_vec(),
            })
            .collect()
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

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
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
        assert_eq!(names(&t.path().join("machines/m")), vec!["g"]);
        assert_eq!(names(t.path()), vec!["machines"], "no spare left");
    }

    #[test]
    fn batches_recycle_spares_across_rounds() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        // More than one round; half the directories exist with other files and longer content.
        let n = MIN_ROUND * 3 + 5;
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| t.path().join(format!("machines/m{}/g{i}", i % 7)))
            .collect();
        for (i, d) in dirs.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            let old = [
                ("x", "old content, longer than the new one"),
                ("a", "old a"),
            ];
            let files: Vec<StagedFile> = old
                .iter()
                .map(|(n, v)| StagedFile {
                    name: n.to_string(),
                    bytes: format!("{v}{i}").into_bytes(),
                })
                .collect();
            store.swap_dir(d, &files).unwrap();
        }
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before: std::collections::BTreeSet<u64> = dirs
            .iter()
            .filter(|d| d.exists())
            .map(|d| inode(d))
            .collect();
        store
            .swap_many(&dirs, |d| -> Result<_, StoreError> {
                let v = d.file_name().unwrap().to_str().unwrap().to_owned();
                Ok((d.clone(), files(&v)))
            })
            .unwrap();
        for d in &dirs {
            let v = d.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(content(d), vec![("a".into(), v.clone()), ("b".into(), v)]);
        }
        assert_eq!(names(t.path()), vec!["machines"], "no spare left");
        // Each round after the first stages into the directories the previous one swapped out.
        let reused = dirs.iter().filter(|d| before.contains(&inode(d))).count();
        assert!(reused >= MIN_ROUND, "only {reused} directories recycled");
    }

    #[test]
    fn a_failing_item_stops_the_batch_and_leaves_no_spares() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let d = t.path().join("shared/g");
        store.swap_dir(&d, &files("old")).unwrap();
        let err = store
            .swap_many(&[0, 1], |i| {
                if *i == 1 {
                    return Err(StoreError::BadMeta {
                        path: d.clone(),
                        reason: "test".into(),
                    });
                }
                Ok((d.clone(), files("new")))
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::BadMeta { .. }));
        assert_eq!(
            content(&d)[0].1,
            "old",
            "nothing of the failed round swapped in"
        );
        assert_eq!(names(t.path()), vec!["shared"]);
    }

    #[test]
    fn fallback_without_exchange_swaps_and_recycles() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let d = t.path().join("shared/g");
        store.swap_dir(&d, &files("old")).unwrap();
        let spare = t.path().join(format!("{SPARE_PREFIX}t"));
        fs::create_dir(&spare).unwrap();
        fs::write(spare.join("a"), "new").unwrap();
        let old = swap_in(&spare, &d, false).unwrap().unwrap();
        assert_eq!(old, t.path().join("shared/.g.old"));
        assert_eq!(content(&d), vec![("a".into(), "new".into())]);
        assert_eq!(content(&old)[0].1, "old");
    }

    #[test]
    fn recovery_after_crash_at_each_step() {
        // The states a crash can leave while swapping "new" over "old"; `true` = new wins.
        type Crash = fn(&Path, &Path, &Path);
        let steps: [(&str, Crash, bool); 5] = [
            (
                "spare half written",
                |_, _, spare| {
                    fs::write(spare.join("a"), "new").unwrap();
                },
                false,
            ),
            (
                "spare written, not swapped",
                |_, _, spare| {
                    fs::write(spare.join("a"), "new").unwrap();
                    fs::write(spare.join("b"), "new").unwrap();
                },
                false,
            ),
            (
                "exchanged",
                |_, d, spare| {
                    fs::write(spare.join("a"), "new").unwrap();
                    fs::write(spare.join("b"), "new").unwrap();
                    swap_in(spare, d, true).unwrap();
                },
                true,
            ),
            (
                "fallback: old moved aside",
                |parent, d, spare| {
                    fs::write(spare.join("a"), "new").unwrap();
                    fs::write(spare.join("b"), "new").unwrap();
                    fs::rename(d, side(parent, "g", OLD)).unwrap();
                },
                false,
            ),
            (
                "fallback: new moved in",
                |parent, d, spare| {
                    fs::write(spare.join("a"), "new").unwrap();
                    fs::write(spare.join("b"), "new").unwrap();
                    fs::rename(d, side(parent, "g", OLD)).unwrap();
                    fs::rename(spare, d).unwrap();
                },
                true,
            ),
        ];
        for (step, crash, new_wins) in steps {
            let t = tempfile::tempdir().unwrap();
            let store = Store::new(t.path());
            let parent = t.path().join("machines/m");
            let d = parent.join("g");
            store.swap_dir(&d, &files("old")).unwrap();
            let spare = t.path().join(format!("{SPARE_PREFIX}9"));
            fs::create_dir(&spare).unwrap();
            crash(&parent, &d, &spare);
            store.recover().unwrap();
            let expect = if new_wins { "new" } else { "old" };
            assert_eq!(
                content(&d),
                vec![("a".into(), expect.into()), ("b".into(), expect.into())],
                "{step}"
            );
            assert_eq!(names(&parent), vec!["g"], "{step}: leftovers");
            assert_eq!(names(t.path()), vec!["machines"], "{step}: spare left");
        }
    }

    #[test]
    fn recovery_finishes_an_interrupted_removal() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::new(t.path());
        let parent = t.path().join("users");
        store.swap_dir(&parent.join("u/g"), &files("old")).unwrap();
        // A crash in remove_dir after the rename, with part of the tree already deleted.
        fs::rename(parent.join("u"), side(&parent, "u", REMOVING)).unwrap();
        fs::remove_file(parent.join(".u.removing/g/a")).unwrap();
        store.recover().unwrap();
        assert!(
            names(&parent).is_empty(),
            "nothing half-deleted is restored"
        );
    }
}
