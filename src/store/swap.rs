//! Replacing whole instance directories atomically (DESIGN §3), one at a time or thousands in a
//! batch.
//!
//! The protocol, for a directory `D`:
//! 1. the new files are written into a *spare*, a directory `.vars-swap-N` at the store root
//!    that holds nothing live;
//! 2. they are made durable: an fsync per file and of the spare, or one `syncfs` per commit of
//!    a large batch;
//! 3. `renameat2(spare, D, RENAME_EXCHANGE)` (`RENAME_SWAP` on macOS) puts the new content at
//!    `D` and the old content in the spare, in one atomic step; a new `D` is a plain rename. On
//!    a file system that cannot exchange, `D` is renamed to `.D.old` and the spare to `D`;
//! 4. the swap is made durable (fsync of both parents, or the next commit's `syncfs`); only
//!    then is the spare, which now holds the old content, reused or deleted.
//!
//! A large batch is staged in parallel and committed 32 directories at a time by a committer
//! thread, so encryption never waits for the disk. The spares one commit swapped
//! out are the staging directories of later ones: their files are overwritten in place, so a
//! rekey of a whole store creates and deletes about two commits' worth of directories,
//! whatever its size (creating and freeing thousands of inodes is what makes a naive rotation
//! slow on some file systems).
//!
//! [`Store::recover`] needs only three rules: a spare is deleted; a `.D.old` beside `D` is
//! deleted, and without `D` it is moved back (a fallback swap interrupted between its two
//! renames); a `.D.removing` (an interrupted [`Store::remove_dir`]) is deleted. So after a
//! crash at any moment, `D` is entirely old or entirely new.
//!
//! The repository is untrusted (DESIGN §3): a commit can hold a `.D.old` too, say a copy of
//! another machine's instance under a new machine's name. So a `.D.old` is moved back only
//! when this machine's [`Journal`], kept outside the repository, says a swap of this machine
//! moved it aside; any other is left for `vars check` to report.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use rayon::prelude::*;

use super::{StagedFile, Store, StoreError, layout};
use crate::fs_util::{self, Create, Dir, IoContext as _, IoError, Kind};

/// Name prefix of the spare directories at the store root.
pub(crate) const SPARE_PREFIX: &str = ".vars-swap-";
/// Suffix of an instance moved aside by a swap without exchange: `.D.old`.
pub(crate) const OLD: &str = "old";
/// Suffix of a directory being removed: `.D.removing`.
pub(crate) const REMOVING: &str = "removing";

/// The directories a fallback swap moved aside (`.D.old`) and whose swap may not be durable
/// yet: a file in this machine's state directory, never in the repository. Written before
/// the first rename, emptied whenever the swaps noted so far are durable (so it lists at most
/// about one commit's directories), and deleted by a recovery that repaired everything.
pub(crate) struct Journal {
    path: Option<PathBuf>,
    /// Entries a recovery has not repaired yet (it failed, or none ran): kept as they are.
    carried: Vec<String>,
    /// This run's entries whose swaps are not durable yet.
    aside: Vec<String>,
}

impl Journal {
    pub(crate) fn new(store: &Store) -> Self {
        Journal {
            path: journal_path(store),
            carried: Journal::pending(store).into_iter().collect(),
            aside: Vec::new(),
        }
    }

    /// Record that `old` (relative to the store) is about to hold a directory's old content.
    /// Without a state directory nothing is recorded: a crash in the window is then repaired
    /// from version control, never from the store's own leftovers.
    fn note(&mut self, old: &Path) -> Result<(), IoError> {
        self.aside.push(old.to_string_lossy().into_owned());
        self.write()
    }

    /// The swaps noted so far are durable: nothing of this run's to repair.
    fn clear(&mut self) {
        if !self.aside.is_empty() {
            self.aside.clear();
            let _ = self.write();
        }
    }

    fn write(&self) -> Result<(), IoError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.carried.is_empty() && self.aside.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IoError {
                    action: "remove",
                    path: path.clone(),
                    source: e,
                }),
                _ => Ok(()),
            };
        }
        let all: Vec<&String> = self.carried.iter().chain(&self.aside).collect();
        crate::fs_util::write_atomic(path, &crate::meta::to_json(&all), 0o600)
    }

    /// What a crashed run of this machine moved aside in `store`. It stays listed until
    /// [`Journal::forget`]: a recovery that fails half-way must find it again.
    pub(crate) fn pending(store: &Store) -> std::collections::BTreeSet<String> {
        let Some(path) = journal_path(store) else {
            return Default::default();
        };
        let listed = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<String>>(&b).ok())
            .unwrap_or_default();
        listed.into_iter().collect()
    }

    /// Recovery repaired everything: nothing is pending any more.
    pub(crate) fn forget(store: &Store) {
        if let Some(path) = journal_path(store) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `<state>/swaps/<sha256 of the store's canonical path>.json`.
fn journal_path(store: &Store) -> Option<PathBuf> {
    use sha2::Digest as _;
    let canonical = std::fs::canonicalize(&store.dir).unwrap_or_else(|_| store.dir.clone());
    let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        store
            .state_dir()?
            .join("swaps")
            .join(format!("{name}.json")),
    )
}

/// Directories per commit. Up to this many in all are made durable file by file; more with
/// one `syncfs` per commit, which also flushes whatever else is dirty on the file system but
/// costs about the same for 10 or 1,000 files, and waits for the disk while staging goes on.
/// Small commits keep few spares alive: on the reference fleet, commits of 8 to 32 rotate the
/// vault about 10 % faster than commits of 128 (fewer directories to create and delete).
const PER_COMMIT: usize = 32;

/// How a batch is committed.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Sync file by file (fsync of each file and directory) instead of the whole file system.
    sync_each: bool,
    /// Directories per commit.
    per_commit: usize,
}

impl Pace {
    fn for_items(n: usize) -> Self {
        Pace {
            // syncfs(2) is Linux's; elsewhere `sync` only schedules the writes.
            sync_each: n <= PER_COMMIT || !cfg!(target_os = "linux"),
            per_commit: PER_COMMIT,
        }
    }

    /// At most this many spares exist at once: a commit's worth waiting for the sync that makes
    /// their swaps durable, a commit's worth being committed, a commit's worth staged for the
    /// next one, one per staging thread, and a commit's worth of slack so that staging goes on
    /// while the committer waits for a sync or for a core. Never less than two commits' worth
    /// and a thread, or staging could wait for spares only a commit it cannot complete would
    /// free; with two, the staging threads of a rotation spent a fifth of their time waiting.
    /// (Rekeying existing instances thus creates at most this many directories; each new
    /// instance takes one more, as it keeps its spare.)
    fn spares(self) -> usize {
        4 * self.per_commit + rayon::current_num_threads() + 1
    }
}

/// Spare names are unique within the process; the store lock excludes other processes and
/// recovery deletes what a dead one left.
static NEXT_SPARE: AtomicUsize = AtomicUsize::new(0);

/// A staging directory (its path relative to the store) and whether it is known to be empty.
struct Spare {
    rel: PathBuf,
    fresh: bool,
}

/// The spares of one batch: handed out for staging, queued for the committer once staged,
/// given back after their commit. One lock and one condition variable for all of it: waking
/// another thread is a system call, so it happens once per commit, not once per directory.
struct Spares<'a> {
    root: &'a Dir,
    /// At most this many spares exist at once.
    limit: usize,
    /// The committer takes this many staged spares at a time.
    per_commit: usize,
    pool: Mutex<Pool>,
    /// Signalled when spares come back, a commit's worth is staged, staging ends, or the pool
    /// closes.
    changed: Condvar,
}

#[derive(Default)]
struct Pool {
    free: Vec<Spare>,
    /// Spares in existence: free, being staged, staged, or waiting for a sync.
    alive: usize,
    /// Items that have not taken a spare yet.
    untaken: usize,
    /// Staged spares and the directory each is to become.
    staged: Vec<(PathBuf, Spare)>,
    /// Every item is staged (or staging stopped): commit what is left.
    staging_done: bool,
    /// The committer stopped: nothing will come back.
    closed: bool,
}

impl<'a> Spares<'a> {
    fn new(root: &'a Dir, pace: Pace, items: usize) -> Self {
        Spares {
            root,
            limit: pace.spares(),
            per_commit: pace.per_commit,
            pool: Mutex::new(Pool {
                untaken: items,
                ..Pool::default()
            }),
            changed: Condvar::new(),
        }
    }

    /// A free spare, or a new one while under the limit, else wait for one. `None` once the
    /// pool is closed.
    fn take(&self) -> Result<Option<Spare>, IoError> {
        let mut pool = self.lock();
        loop {
            if let Some(spare) = pool.free.pop() {
                pool.untaken = pool.untaken.saturating_sub(1);
                return Ok(Some(spare));
            }
            if pool.closed {
                return Ok(None);
            }
            if pool.alive < self.limit {
                pool.alive += 1;
                pool.untaken = pool.untaken.saturating_sub(1);
                break;
            }
            pool = self.changed.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
        drop(pool);
        let n = NEXT_SPARE.fetch_add(1, Ordering::Relaxed);
        let rel = PathBuf::from(format!("{SPARE_PREFIX}{n}"));
        // A leftover of this name (from a dead process) is deleted, never reused.
        let created = self
            .root
            .remove_all(&rel)
            .and_then(|()| self.root.create_dir_all(&rel));
        if let Err(e) = created {
            self.gone(1);
            return Err(e);
        }
        Ok(Some(Spare { rel, fresh: true }))
    }

    /// Spares whose content may be overwritten or deleted come back. Those beyond what the
    /// items still to stage need are deleted now, while staging goes on, not all at the end.
    fn give_back(&self, spares: impl IntoIterator<Item = Spare>) -> Result<(), IoError> {
        let mut pool = self.lock();
        pool.free.extend(spares);
        let keep = pool.untaken.min(pool.free.len());
        let surplus = pool.free.split_off(keep);
        pool.alive -= surplus.len();
        drop(pool);
        self.changed.notify_all();
        if surplus.is_empty() {
            // Not even an empty parallel loop: from the committer thread it would wake the
            // global rayon pool, whose threads spin for a while, taking CPU from the staging.
            return Ok(());
        }
        surplus
            .par_iter()
            .try_for_each(|s| self.root.remove_all(&s.rel))
    }

    /// `n` spares became instance directories (or were lost to an error).
    fn gone(&self, n: usize) {
        let mut pool = self.lock();
        pool.alive = pool.alive.saturating_sub(n);
        drop(pool);
        self.changed.notify_all();
    }

    /// Queue a staged spare for the committer. `false` (and the spare is freed) once the pool
    /// is closed.
    fn hand_over(&self, dir: PathBuf, spare: Spare) -> bool {
        let mut pool = self.lock();
        if pool.closed {
            pool.free.push(spare);
            return false;
        }
        pool.staged.push((dir, spare));
        let wake = pool.staged.len() == self.per_commit;
        drop(pool);
        if wake {
            self.changed.notify_all();
        }
        true
    }

    /// The next staged spares to commit: a commit's worth, or what is left once staging is
    /// done. `None` when nothing is left.
    fn next_commit(&self) -> Option<Vec<(PathBuf, Spare)>> {
        let mut pool = self.lock();
        loop {
            if pool.staged.len() >= self.per_commit
                || (pool.staging_done && !pool.staged.is_empty())
            {
                // Never more than a commit's worth: the spares this commit leaves waiting for
                // the next sync must not exceed what `Pace::spares` allows for.
                let take = pool.staged.len().min(self.per_commit);
                let rest = pool.staged.split_off(take);
                return Some(std::mem::replace(&mut pool.staged, rest));
            }
            if pool.staging_done {
                return None;
            }
            pool = self.changed.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn staging_done(&self) {
        self.lock().staging_done = true;
        self.changed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Delete every spare left (their content is old or was never swapped in).
    fn remove_all(self) -> Result<(), IoError> {
        let pool = self.pool.into_inner().unwrap_or_else(|e| e.into_inner());
        let staged = pool.staged.iter().map(|(_, spare)| spare);
        let all: Vec<&Spare> = pool.free.iter().chain(staged).collect();
        all.par_iter()
            .try_for_each(|s| self.root.remove_all(&s.rel))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store {
    /// Replace the directory `dir` (relative to the store) with exactly `files`, atomically
    /// (see the module docs).
    pub fn swap_dir(&self, dir: &Path, files: &[StagedFile]) -> Result<(), StoreError> {
        let root = self.ensure_root()?;
        let spares = Spares::new(root, Pace::for_items(1), 1);
        let result = (|| -> Result<(), StoreError> {
            let spare = spares.take()?.expect("the pool is open");
            fill(root, &spare, files, true)?;
            let mut commits = Commits::new(self, &spares, true);
            commits.commit(vec![(dir.to_path_buf(), spare)])?;
            commits.finish()
        })();
        let cleanup = spares.remove_all();
        result?;
        Ok(cleanup?)
    }

    /// Replace many directories, each atomically: `stage` says which directory an item is
    /// (relative to the store; each item a different one) and what it must contain. Items are staged in parallel on
    /// the current rayon pool and handed to a committing thread, which swaps them in by
    /// batches, so staging never waits for the disk. Stops at the first error; what was staged
    /// before it is swapped in.
    pub fn swap_many<T, E>(
        &self,
        items: &[T],
        stage: impl Fn(&T) -> Result<(PathBuf, Vec<StagedFile>), E> + Sync,
    ) -> Result<(), E>
    where
        T: Sync,
        E: From<StoreError> + Send,
    {
        self.swap_paced(items, stage, Pace::for_items(items.len()))
    }

    fn swap_paced<T, E>(
        &self,
        items: &[T],
        stage: impl Fn(&T) -> Result<(PathBuf, Vec<StagedFile>), E> + Sync,
        pace: Pace,
    ) -> Result<(), E>
    where
        T: Sync,
        E: From<StoreError> + Send,
    {
        let root = self.ensure_root().map_err(E::from)?;
        let spares = Spares::new(root, pace, items.len());
        let result = std::thread::scope(|scope| -> Result<(), E> {
            let spares = &spares;
            let committer = scope.spawn(move || -> Result<(), StoreError> {
                let mut commits = Commits::new(self, spares, pace.sync_each);
                let committed = (|| {
                    while let Some(staged) = spares.next_commit() {
                        commits.commit(staged)?;
                    }
                    commits.finish()
                })();
                // Staging threads waiting for a spare must not wait for a failed committer.
                spares.close();
                committed
            });
            // `None`: stopped because the committer failed (its error is the one to report).
            let staged = items
                .par_iter()
                .try_for_each(|item| -> Result<(), Option<E>> {
                    let (dir, files) = stage(item).map_err(Some)?;
                    let spare = spares
                        .take()
                        .map_err(|e| Some(StoreError::from(e).into()))?
                        .ok_or(None)?;
                    if let Err(e) = fill(root, &spare, &files, pace.sync_each) {
                        // Staging stops at this error; a spare not deleted is recovery's job.
                        let _ = spares.give_back([spare]);
                        return Err(Some(StoreError::from(e).into()));
                    }
                    spares.hand_over(dir, spare).then_some(()).ok_or(None)
                });
            spares.staging_done();
            committer
                .join()
                .expect("committing does not panic")
                .map_err(E::from)?;
            staged.map_err(|e| {
                e.expect("staging stops early only on its own error or the committer's")
            })
        });
        let cleanup = spares.remove_all();
        result?;
        cleanup.map_err(|e| StoreError::from(e).into())
    }

    /// Flush everything written to the store's file system (syncfs(2)).
    #[cfg(target_os = "linux")]
    fn sync_fs(&self) -> Result<(), StoreError> {
        Ok(self.ensure_root()?.sync_fs()?)
    }

    /// Off Linux every commit is synced file by file ([`Pace::for_items`]).
    #[cfg(not(target_os = "linux"))]
    fn sync_fs(&self) -> Result<(), StoreError> {
        unreachable!("batches are synced file by file where syncfs(2) does not exist")
    }

    /// Remove a directory (relative to the store) atomically: renamed to `.D.removing`
    /// first, so a crash never leaves a half-deleted `D`.
    pub fn remove_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let Some(root) = self.root()? else {
            return Ok(());
        };
        if root.kind(dir)?.is_none() {
            return Ok(());
        }
        let (parent, name) = split(dir);
        let removing = side(&parent, &name, REMOVING);
        root.remove_all(&removing)?;
        root.rename(dir, root, &removing, false)?;
        sync_parent(root, &parent)?;
        root.remove_all(&removing)?;
        Ok(())
    }
}

/// Steps 2–4, commit after commit.
struct Commits<'s> {
    store: &'s Store,
    spares: &'s Spares<'s>,
    /// Sync file by file rather than the whole file system.
    sync_each: bool,
    /// Spares holding old content whose swap is not durable yet: the next commit's sync makes
    /// it so, and only then may they be overwritten or deleted.
    unsynced: Vec<Spare>,
    /// What fallback swaps moved aside, for recovery.
    journal: Journal,
}

impl<'s> Commits<'s> {
    fn new(store: &'s Store, spares: &'s Spares<'s>, sync_each: bool) -> Self {
        Commits {
            store,
            spares,
            sync_each,
            unsynced: Vec::new(),
            journal: Journal::new(store),
        }
    }

    /// Make `staged` durable and swap each in; spares that may be reused go back to the pool.
    fn commit(&mut self, staged: Vec<(PathBuf, Spare)>) -> Result<(), StoreError> {
        if staged.is_empty() {
            return Ok(());
        }
        let root = self.store.ensure_root()?;
        if self.sync_each {
            for (_, spare) in &staged {
                let dir = root.open_dir(&spare.rel)?;
                dir.ok_or_else(|| gone(root, &spare.rel))?.sync()?;
            }
        } else {
            // Also makes the previous commit's swaps durable.
            self.store.sync_fs()?;
            self.journal.clear();
        }
        self.spares.give_back(std::mem::take(&mut self.unsynced))?;
        let mut old = Vec::with_capacity(staged.len());
        for (dir, spare) in &staged {
            match swap_in(root, &spare.rel, dir, true, &mut self.journal) {
                Ok(Some(rel)) => old.push(Spare { rel, fresh: false }),
                Ok(None) => {}
                Err(e) => {
                    // This and the rest stay on disk for recovery, lost to this batch.
                    self.spares.gone(staged.len() - old.len());
                    return Err(e.into());
                }
            }
        }
        // The others became directories that did not exist before.
        self.spares.gone(staged.len() - old.len());
        if self.sync_each {
            let mut parents: Vec<&Path> = staged.iter().filter_map(|(d, _)| d.parent()).collect();
            parents.push(Path::new(""));
            parents.sort();
            parents.dedup();
            for p in parents {
                sync_parent(root, p)?;
            }
            self.journal.clear();
            self.spares.give_back(old)?;
        } else {
            self.unsynced = old;
        }
        Ok(())
    }

    /// Make the last swaps durable and give their spares back.
    fn finish(mut self) -> Result<(), StoreError> {
        if !self.unsynced.is_empty() {
            self.store.sync_fs()?;
            self.spares.give_back(std::mem::take(&mut self.unsynced))?;
        }
        self.journal.clear();
        Ok(())
    }
}

/// Make `spare` hold exactly `files`. A recycled spare's files are overwritten in place (no
/// truncation first: the same inodes and, for same-sized content, the same blocks).
fn fill(root: &Dir, spare: &Spare, files: &[StagedFile], sync_each: bool) -> Result<(), IoError> {
    let dir = root
        .open_dir(&spare.rel)?
        .ok_or_else(|| gone(root, &spare.rel))?;
    if !spare.fresh {
        for entry in dir.entries()? {
            if !files.iter().any(|f| *f.name == *entry.name) {
                dir.remove_all(Path::new(&entry.name))?;
            }
        }
    }
    for f in files {
        let mut file = dir.create_file(&f.name, 0o644, Create::Reuse)?;
        file.write_all(&f.bytes).at("write", dir.display(&f.name))?;
        if !spare.fresh {
            file.set_len(f.bytes.len() as u64)
                .at("write", dir.display(&f.name))?;
        }
        if sync_each {
            file.sync_all().at("sync", dir.display(&f.name))?;
        }
    }
    Ok(())
}

/// The error for a spare that vanished (someone else is writing the store).
fn gone(root: &Dir, rel: &Path) -> IoError {
    IoError {
        action: "open directory",
        path: root.display(rel),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    }
}

/// fsync the directory `rel` below the store (the store itself for an empty path).
fn sync_parent(root: &Dir, rel: &Path) -> Result<(), IoError> {
    if rel.as_os_str().is_empty() {
        return root.sync();
    }
    match root.open_dir(rel)? {
        Some(d) => d.sync(),
        None => Err(gone(root, rel)),
    }
}

/// Step 3: put `spare`'s content at `dir` (both relative to the store). Returns where the old
/// content is now (`None` when `dir` did not exist). `exchange: false` forces the fallback
/// (for tests). A `dir` that is a link is refused: its target would become a spare's content.
/// The fallback notes in `journal` what it moves aside.
fn swap_in(
    root: &Dir,
    spare: &Path,
    dir: &Path,
    exchange: bool,
    journal: &mut Journal,
) -> Result<Option<PathBuf>, IoError> {
    use rustix::io::Errno;
    match root.kind(dir)? {
        None => return place_new(root, spare, dir).map(|()| None),
        Some(Kind::Dir) => {}
        Some(other) => {
            return Err(IoError {
                action: "swap in",
                path: root.display(dir),
                source: std::io::Error::other(format!(
                    "it is a {}, not a directory (the store was tampered with)",
                    other.describe()
                )),
            });
        }
    }
    if exchange {
        match root.rename(spare, root, dir, true) {
            Ok(()) => return Ok(Some(spare.to_path_buf())),
            Err(e) => match e.source.raw_os_error().map(Errno::from_raw_os_error) {
                Some(Errno::NOENT) => return place_new(root, spare, dir).map(|()| None),
                // The file system (or kernel) cannot exchange: fall back to two renames.
                Some(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {}
                #[allow(unreachable_patterns)] // EOPNOTSUPP is ENOTSUP on Linux, not on macOS
                Some(Errno::OPNOTSUPP) => {}
                _ => return Err(e),
            },
        }
    }
    let (parent, name) = split(dir);
    let old = side(&parent, &name, OLD);
    root.remove_all(&old)?;
    journal.note(&old)?;
    root.rename(dir, root, &old, false)?;
    root.rename(spare, root, dir, false)?;
    Ok(Some(old))
}

/// A directory that did not exist yet: create its parents and rename the spare there.
fn place_new(root: &Dir, spare: &Path, dir: &Path) -> Result<(), IoError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.create_dir_all(parent)?;
    }
    root.rename(spare, root, dir, false)
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

impl Store {
    /// Finish or roll back swaps a crash interrupted, anywhere in the store. Returns the
    /// directories it repaired.
    pub fn recover(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut repaired = Vec::new();
        let Some(root) = self.root()? else {
            return Ok(repaired);
        };
        let aside = Journal::pending(self);
        // Parents that can hold swap leftovers: the root (spares, keys), the groups, and each
        // machine's and user's directory. Only real directories are looked into.
        let mut parents = vec![String::new(), layout::SHARED_DIR.to_owned()];
        for group in [layout::MACHINES_DIR, layout::USERS_DIR] {
            parents.push(group.to_owned());
            if let Some(dir) = root.open_dir(group)? {
                parents.extend(
                    dir.entries()?
                        .into_iter()
                        .filter(|e| e.kind == Kind::Dir)
                        .filter_map(|e| Some(format!("{group}/{}", e.name_str()?))),
                );
            }
        }
        for parent in parents {
            let dir = if parent.is_empty() {
                Some(root.duplicate().at("open directory", &self.dir)?)
            } else {
                root.open_dir(&parent)?
            };
            let Some(dir) = dir else { continue };
            let rel = |name: &str| -> PathBuf { Path::new(&parent).join(name) };
            for entry in dir.entries()? {
                let Some(name) = entry.name_str() else {
                    continue;
                };
                if name.starts_with(fs_util::TMP_PREFIX) || name.starts_with(SPARE_PREFIX) {
                    // A file write killed before its rename, or a spare (never live content:
                    // staged and not swapped in, or old).
                    dir.remove_all(name)?;
                    repaired.push(self.dir.join(rel(name)));
                    continue;
                }
                let Some((target, kind)) = name
                    .strip_prefix('.')
                    .and_then(|rest| rest.rsplit_once('.'))
                    .filter(|(target, _)| crate::model::check_name(target).is_ok())
                else {
                    continue;
                };
                match kind {
                    REMOVING => dir.remove_all(name)?,
                    // A swap without exchange, interrupted after moving the old content aside:
                    // put it back unless the new content made it to `D`.
                    OLD if dir.kind(target)?.is_some() => dir.remove_all(name)?,
                    // Only what this machine moved aside: a `.D.old` from a commit is not ours
                    // to make live (`check` reports it).
                    OLD if aside.contains(rel(name).to_string_lossy().as_ref()) => {
                        dir.rename(name, &dir, target, false)?;
                        dir.sync()?;
                    }
                    _ => continue,
                }
                repaired.push(self.dir.join(rel(target)));
            }
        }
        Journal::forget(self);
        Ok(repaired)
    }
}

/// Names of vars' own transient files: spares, temporary files, `.D.old`, `.D.removing`.
pub(crate) fn is_leftover(name: &str) -> bool {
    name.starts_with(SPARE_PREFIX)
        || name.starts_with(fs_util::TMP_PREFIX)
        || (name.starts_with('.')
            && name
                .strip_suffix(OLD)
                .or_else(|| name.strip_suffix(REMOVING))
                .is_some_and(|rest| rest.ends_with('.')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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

    /// A store that keeps no state in the real home.
    fn test_store(dir: impl Into<PathBuf>) -> Store {
        Store::new(dir).with_state_dir(None)
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
        let store = test_store(t.path());
        let rel = Path::new("machines/m/g");
        let d = t.path().join(rel);
        store.swap_dir(rel, &files("1")).unwrap();
        store
            .swap_dir(
                rel,
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
    fn batches_recycle_spares_across_commits() {
        let t = tempfile::tempdir().unwrap();
        let store = test_store(t.path());
        // Many commits. All but a few directories exist, with other files and longer content.
        let (n, new) = (300, 5);
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| PathBuf::from(format!("machines/m{}/g{i}", i % 7)))
            .collect();
        let abs = |d: &PathBuf| t.path().join(d);
        store
            .swap_many(&dirs[new..], |d| -> Result<_, StoreError> {
                let old = [("x", "old, longer than the new content"), ("a", "old a")];
                let files = old.iter().map(|(n, v)| StagedFile {
                    name: n.to_string(),
                    bytes: v.as_bytes().to_vec(),
                });
                Ok((d.clone(), files.collect()))
            })
            .unwrap();
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before: std::collections::BTreeSet<u64> =
            dirs[new..].iter().map(|d| inode(&abs(d))).collect();
        let pace = Pace {
            sync_each: false,
            per_commit: 8,
        };
        store
            .swap_paced(
                &dirs,
                |d| -> Result<_, StoreError> {
                    let v = d.file_name().unwrap().to_str().unwrap().to_owned();
                    Ok((d.clone(), files(&v)))
                },
                pace,
            )
            .unwrap();
        for d in &dirs {
            let v = d.file_name().unwrap().to_str().unwrap().to_owned();
            assert_eq!(content(&abs(d)), files_content(&v));
        }
        assert_eq!(names(t.path()), vec!["machines"], "no spare left");
        // A directory gets a fresh inode only from a fresh spare; every other one is an old
        // directory a commit swapped out, recycled.
        let fresh = dirs
            .iter()
            .filter(|d| !before.contains(&inode(&abs(d))))
            .count();
        let bound = pace.spares() + new;
        assert!(
            fresh <= bound,
            "{fresh} fresh directories (at most {bound})"
        );
    }

    #[test]
    fn a_failing_item_stops_the_batch_and_leaves_no_spares() {
        let t = tempfile::tempdir().unwrap();
        let store = test_store(t.path());
        let dirs: Vec<PathBuf> = (0..40)
            .map(|i| PathBuf::from(format!("shared/g{i}")))
            .collect();
        for d in &dirs {
            store.swap_dir(d, &files("old")).unwrap();
        }
        let err = store
            .swap_many(&dirs, |d| {
                if d.ends_with("g7") {
                    return Err(StoreError::BadMeta {
                        path: d.clone(),
                        reason: "test".into(),
                    });
                }
                Ok((d.clone(), files("new")))
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::BadMeta { .. }));
        assert_eq!(content(&t.path().join(&dirs[7])), files_content("old"));
        // The others were staged or not when staging stopped: each is entirely old or new.
        for d in &dirs {
            let c = content(&t.path().join(d));
            assert!(
                c == files_content("old") || c == files_content("new"),
                "{d:?}: {c:?}"
            );
        }
        assert_eq!(names(t.path()), vec!["shared"], "no spare left");
    }

    fn files_content(v: &str) -> Vec<(String, String)> {
        vec![("a".into(), v.into()), ("b".into(), v.into())]
    }

    #[test]
    fn a_failing_commit_stops_staging_without_deadlock() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        // Every target's parent is a file: the first commit fails while staging threads wait
        // for spares only commits would free.
        fs::write(root.join("blocker"), "not a directory").unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let worker_root = root.clone();
        std::thread::spawn(move || {
            let store = test_store(&worker_root);
            let dirs: Vec<PathBuf> = (0..200)
                .map(|i| PathBuf::from(format!("blocker/g{i}")))
                .collect();
            let pace = Pace {
                sync_each: false,
                per_commit: 4,
            };
            let result = store.swap_paced(
                &dirs,
                |d| -> Result<_, StoreError> { Ok((d.clone(), files("x"))) },
                pace,
            );
            done_tx.send(result.map_err(|e| e.to_string())).unwrap();
        });
        let result = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("swap_paced returned (no deadlock)");
        let err = result.unwrap_err();
        assert!(err.contains("blocker"), "{err}");
        // What the failure left behind is only spares, which recovery removes.
        test_store(&root).recover().unwrap();
        assert_eq!(names(&root), vec!["blocker"]);
    }

    #[test]
    fn fallback_without_exchange_swaps_and_recycles() {
        let t = tempfile::tempdir().unwrap();
        let store = test_store(t.path());
        let rel = Path::new("shared/g");
        store.swap_dir(rel, &files("old")).unwrap();
        let spare = t.path().join(format!("{SPARE_PREFIX}t"));
        fs::create_dir(&spare).unwrap();
        fs::write(spare.join("a"), "new").unwrap();
        let root = store.ensure_root().unwrap();
        let mut journal = Journal::new(&store);
        let old = swap_in(
            root,
            Path::new(&format!("{SPARE_PREFIX}t")),
            rel,
            false,
            &mut journal,
        )
        .unwrap()
        .unwrap();
        assert_eq!(old, Path::new("shared/.g.old"));
        assert_eq!(
            content(&t.path().join(rel)),
            vec![("a".into(), "new".into())]
        );
        assert_eq!(content(&t.path().join(&old))[0].1, "old");
    }

    #[test]
    fn recovery_after_crash_at_each_step() {
        // The states a crash can leave while swapping "new" over "old"; `true` = new wins.
        // The fallback steps are noted in the journal first, as `swap_in` does.
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
                    rustix::fs::renameat_with(
                        rustix::fs::CWD,
                        spare,
                        rustix::fs::CWD,
                        d,
                        rustix::fs::RenameFlags::EXCHANGE,
                    )
                    .unwrap();
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
            let state = tempfile::tempdir().unwrap();
            let store = Store::new(t.path()).with_state_dir(Some(state.path().into()));
            let parent = t.path().join("machines/m");
            let d = parent.join("g");
            store
                .swap_dir(Path::new("machines/m/g"), &files("old"))
                .unwrap();
            let spare = t.path().join(format!("{SPARE_PREFIX}9"));
            fs::create_dir(&spare).unwrap();
            if step.starts_with("fallback") {
                Journal::new(&store)
                    .note(Path::new("machines/m/.g.old"))
                    .unwrap();
            }
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
    fn recovery_restores_only_what_this_machine_moved_aside() {
        // A commit can carry `.g.old` (say a copy of another machine's instance) where `g`
        // does not exist: without a journal entry it is not made live.
        let t = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = Store::new(t.path()).with_state_dir(Some(state.path().into()));
        store
            .swap_dir(Path::new("machines/m/g"), &files("planted"))
            .unwrap();
        let parent = t.path().join("machines/m");
        fs::rename(parent.join("g"), side(&parent, "g", OLD)).unwrap();
        store.recover().unwrap();
        assert_eq!(names(&parent), vec![".g.old"], "planted leftover made live");
        // The journal of another store does not count either.
        let other = tempfile::tempdir().unwrap();
        let other_store = Store::new(other.path()).with_state_dir(Some(state.path().into()));
        Journal::new(&other_store)
            .note(Path::new("machines/m/.g.old"))
            .unwrap();
        store.recover().unwrap();
        assert_eq!(names(&parent), vec![".g.old"]);
        // This store's own entry is honoured once, then forgotten.
        Journal::new(&store)
            .note(Path::new("machines/m/.g.old"))
            .unwrap();
        store.recover().unwrap();
        assert_eq!(names(&parent), vec!["g"]);
        assert!(Journal::pending(&store).is_empty());
    }

    #[test]
    fn entries_no_recovery_repaired_survive_later_runs() {
        let t = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = Store::new(t.path()).with_state_dir(Some(state.path().into()));
        // A run crashed after noting (its journal never cleared) ...
        Journal::new(&store)
            .note(Path::new("machines/m/.a.old"))
            .unwrap();
        // ... and a later one, whose recovery did not run or failed, swaps and clears.
        let mut later = Journal::new(&store);
        later.note(Path::new("machines/m/.b.old")).unwrap();
        assert_eq!(Journal::pending(&store).len(), 2);
        later.clear();
        let pending = Journal::pending(&store);
        assert_eq!(
            pending.into_iter().collect::<Vec<_>>(),
            vec!["machines/m/.a.old".to_owned()]
        );
        // A recovery that repairs everything forgets it.
        store.recover().unwrap();
        assert!(Journal::pending(&store).is_empty());
    }

    #[test]
    fn a_durable_batch_leaves_no_journal() {
        let t = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let store = Store::new(t.path()).with_state_dir(Some(state.path().into()));
        let mut journal = Journal::new(&store);
        journal.note(Path::new("shared/.g.old")).unwrap();
        assert!(state.path().join("swaps").is_dir());
        journal.clear();
        assert_eq!(fs::read_dir(state.path().join("swaps")).unwrap().count(), 0);
    }

    #[test]
    fn recovery_finishes_an_interrupted_removal() {
        let t = tempfile::tempdir().unwrap();
        let store = test_store(t.path());
        let parent = t.path().join("users");
        store
            .swap_dir(Path::new("users/u/g"), &files("old"))
            .unwrap();
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
