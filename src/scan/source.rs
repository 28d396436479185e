//! What `vars scan` reads, and the only module of vars that reads git (STYLE: one seam per
//! external system). It uses the `gix` crate, never a `git` process:
//!
//! - by default every entry of the index, read as its blob from the object database: the
//!   content that will be (or was) committed, not the worktree, which may differ;
//! - `--staged`: only entries whose blob or mode differs from `HEAD`'s tree, what a
//!   pre-commit hook must judge (`GIT_INDEX_FILE`, which git sets for hooks and for
//!   `git commit <path>`, is honoured by [`gix::discover_with_environment_overrides`]);
//! - `--untracked`: also untracked, non-ignored files, read from the worktree without
//!   following symlinks;
//! - outside a repository, the paths given, read from disk without following symlinks.
//!
//! Conflict stages are all read; intent-to-add entries have no content yet and are skipped.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use super::ScanError;

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A blob of the git index.
    Index,
    /// An untracked file of the worktree (`--untracked`).
    Untracked,
    /// A file on disk outside any git repository.
    File,
}

/// What kind of entry it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// A regular (possibly executable) file.
    File,
    /// A symbolic link: its blob is the target path, not content.
    Symlink,
    /// A submodule (gitlink): a commit id, no content here.
    Submodule,
    /// A device, fifo or socket (disk only).
    Special,
}

/// One thing to judge.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Repository-relative with `/` (git), or the path as given (disk).
    pub path: String,
    /// Absolute, lexically normalised path: where the entry is (or would be) in the worktree.
    pub abs: PathBuf,
    /// Its kind.
    pub kind: EntryKind,
    /// Where it came from.
    pub origin: Origin,
    /// The blob id (index entries).
    pub oid: Option<gix::ObjectId>,
    /// In `--staged` mode: differs from `HEAD`. Otherwise always true.
    pub selected: bool,
    /// The size the index recorded (0 when unknown).
    pub size_hint: u64,
}

/// An entry's bytes, or why there are none.
pub(super) enum Content {
    /// The content.
    Bytes(Vec<u8>),
    /// Bigger than the cap: not read.
    TooLarge,
    /// Not a regular file (symlink, submodule, special).
    NotRegular,
}

/// The opened source: the repository (if any) and every entry found.
pub(super) struct Source {
    repo: Option<gix::ThreadSafeRepository>,
    /// Every entry, sorted by path.
    pub entries: Vec<Entry>,
}

/// What to collect.
pub(super) struct Want<'a> {
    pub cwd: &'a Path,
    pub staged: bool,
    pub untracked: bool,
    pub paths: &'a [PathBuf],
}

impl Source {
    /// Open the repository around `cwd`, or fall back to the given paths on disk.
    pub fn open(want: &Want<'_>) -> Result<Source, ScanError> {
        let cwd = std::fs::canonicalize(want.cwd).map_err(|source| ScanError::Io {
            path: want.cwd.to_path_buf(),
            source,
        })?;
        match gix::discover_with_environment_overrides(&cwd) {
            Ok(repo) if repo.workdir().is_some() => Self::from_repo(repo, &cwd, want),
            Ok(_) => Err(ScanError::Bare),
            Err(e) if !want.paths.is_empty() && !want.staged => {
                // Not in a repository: scan the files named, as they are on disk.
                let _ = e;
                Self::from_disk(&cwd, want.paths)
            }
            Err(e) => Err(ScanError::NotARepository {
                dir: cwd,
                reason: e.to_string(),
            }),
        }
    }

    fn from_repo(
        mut repo: gix::Repository,
        cwd: &Path,
        want: &Want<'_>,
    ) -> Result<Source, ScanError> {
        let git = |action: &'static str| {
            move |e: gix::Error| ScanError::Git {
                action,
                message: e.to_string(),
            }
        };
        repo.object_cache_size_if_unset(4 * 1024 * 1024);
        let workdir = repo.workdir().expect("checked by the caller").to_path_buf();
        let root = std::fs::canonicalize(cwd.join(&workdir)).map_err(|source| ScanError::Io {
            path: workdir.clone(),
            source,
        })?;
        let prefixes = want
            .paths
            .iter()
            .map(|p| repo_relative(&root, cwd, p))
            .collect::<Result<Vec<_>, _>>()?;
        let index = repo.index_or_empty().map_err(git("read the index"))?;
        let head = if want.staged {
            let tree = repo
                .head_tree_id_or_empty()
                .map_err(git("find HEAD's tree"))?
                .detach();
            Some(
                repo.index_from_tree(&tree)
                    .map_err(git("read HEAD's tree"))?,
            )
        } else {
            None
        };
        let mut entries = Vec::new();
        let mut last: Option<(String, gix::ObjectId)> = None;
        for e in index.entries() {
            if e.flags.contains(gix::index::entry::Flags::INTENT_TO_ADD) {
                continue;
            }
            let path = String::from_utf8_lossy(e.path(&index)).into_owned();
            // Conflict stages with the same blob are read once.
            if last
                .as_ref()
                .is_some_and(|(p, id)| *p == path && *id == e.id)
            {
                continue;
            }
            last = Some((path.clone(), e.id));
            let kind = match e.mode {
                gix::index::entry::Mode::COMMIT => EntryKind::Submodule,
                gix::index::entry::Mode::SYMLINK => EntryKind::Symlink,
                // A sparse-index directory entry: its files are not in this index.
                gix::index::entry::Mode::DIR => continue,
                _ => EntryKind::File,
            };
            let selected = match &head {
                None => true,
                Some(h) => h
                    .entry_by_path(e.path(&index))
                    .is_none_or(|old| old.id != e.id || old.mode != e.mode),
            };
            entries.push(Entry {
                abs: lexical(&root.join(&path)),
                path,
                kind,
                origin: Origin::Index,
                oid: Some(e.id),
                selected,
                size_hint: u64::from(e.stat.size),
            });
        }
        drop(index);
        if want.untracked {
            let options = repo
                .dirwalk_options()
                .map_err(git("prepare the worktree walk"))?
                .emit_untracked(gix::dir::walk::EmissionMode::Matching)
                .emit_ignored(None)
                .emit_tracked(false)
                .recurse_repositories(false);
            let index = repo.index_or_empty().map_err(git("read the index"))?;
            let walk = repo
                .dirwalk_iter(
                    index,
                    Vec::<gix::bstr::BString>::new(),
                    Default::default(),
                    options,
                )
                .map_err(git("walk the worktree"))?;
            for item in walk {
                let item = item.map_err(git("walk the worktree"))?;
                let e = item.entry;
                if e.status != gix::dir::entry::Status::Untracked {
                    continue;
                }
                let kind = match e.disk_kind {
                    Some(gix::dir::entry::Kind::File) => EntryKind::File,
                    Some(gix::dir::entry::Kind::Symlink) => EntryKind::Symlink,
                    // Directories are emitted file by file in `Matching` mode; nested
                    // repositories are their own scan.
                    _ => continue,
                };
                let path = String::from_utf8_lossy(&e.rela_path).into_owned();
                entries.push(Entry {
                    abs: lexical(&root.join(&path)),
                    path,
                    kind,
                    origin: Origin::Untracked,
                    oid: None,
                    selected: true,
                    size_hint: 0,
                });
            }
        }
        if !prefixes.is_empty() {
            for e in &mut entries {
                e.selected &= prefixes.iter().any(|p| under(&e.path, p));
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Source {
            repo: Some(repo.into_sync()),
            entries,
        })
    }

    fn from_disk(cwd: &Path, paths: &[PathBuf]) -> Result<Source, ScanError> {
        let mut entries = Vec::new();
        for p in paths {
            let abs = lexical(&cwd.join(p));
            walk_disk(&abs, &p.to_string_lossy(), &mut entries)?;
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.abs == b.abs);
        Ok(Source {
            repo: None,
            entries,
        })
    }

    /// Read the entries `pick` selects (indices into [`Self::entries`]) in parallel, each
    /// once, skipping any larger than `max_size(index)`, and hand each to `judge` on the
    /// thread that read it, so only what `judge` keeps stays in memory.
    pub fn read<T: Send>(
        &self,
        pick: &[usize],
        max_size: impl Fn(usize) -> u64 + Sync,
        judge: impl Fn(usize, Content) -> T + Sync,
    ) -> Result<Vec<(usize, T)>, ScanError> {
        let one = |r: Option<&gix::Repository>, i: usize| {
            read_entry(r, &self.entries[i], max_size(i)).map(|c| (i, judge(i, c)))
        };
        match &self.repo {
            Some(repo) => pick
                .par_iter()
                .map_init(|| repo.to_thread_local(), |r, &i| one(Some(r), i))
                .collect(),
            None => pick.par_iter().map(|&i| one(None, i)).collect(),
        }
    }
}

fn read_entry(
    repo: Option<&gix::Repository>,
    e: &Entry,
    max_size: u64,
) -> Result<Content, ScanError> {
    if e.kind != EntryKind::File {
        return Ok(Content::NotRegular);
    }
    match (e.origin, repo, e.oid) {
        (Origin::Index, Some(repo), Some(id)) => {
            let git = |e: gix::Error| ScanError::Git {
                action: "read a blob",
                message: e.to_string(),
            };
            // The index records the worktree size (truncated to 32 bits, 0 when unknown):
            // ask the object database before inflating anything that may be huge.
            if e.size_hint == 0 || e.size_hint >= max_size / 2 {
                let size = repo.find_header(id).map_err(git)?.size();
                if size > max_size {
                    return Ok(Content::TooLarge);
                }
            }
            let mut blob = repo.find_blob(id).map_err(git)?;
            Ok(Content::Bytes(std::mem::take(&mut blob.data)))
        }
        _ => read_disk(&e.abs, max_size),
    }
}

/// Read a regular file without following a symlink at its last component.
fn read_disk(path: &Path, max_size: u64) -> Result<Content, ScanError> {
    let io = |source| ScanError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Content::NotRegular),
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Ok(Content::NotRegular);
    }
    if meta.len() > max_size {
        return Ok(Content::TooLarge);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_size {
        return Ok(Content::TooLarge);
    }
    Ok(Content::Bytes(bytes))
}

fn walk_disk(abs: &Path, shown: &str, out: &mut Vec<Entry>) -> Result<(), ScanError> {
    let meta = std::fs::symlink_metadata(abs).map_err(|source| ScanError::Io {
        path: PathBuf::from(shown),
        source,
    })?;
    let ft = meta.file_type();
    if ft.is_dir() {
        let rd = std::fs::read_dir(abs).map_err(|source| ScanError::Io {
            path: PathBuf::from(shown),
            source,
        })?;
        let mut names: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        names.sort();
        for n in names {
            if n == ".git" {
                continue;
            }
            let child = format!("{}/{}", shown.trim_end_matches('/'), n.to_string_lossy());
            walk_disk(&abs.join(&n), &child, out)?;
        }
        return Ok(());
    }
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Special
    };
    out.push(Entry {
        path: shown.strip_prefix("./").unwrap_or(shown).to_owned(),
        abs: abs.to_path_buf(),
        kind,
        origin: Origin::File,
        oid: None,
        selected: true,
        size_hint: meta.len(),
    });
    Ok(())
}

/// `p` (relative to `cwd`) as a repository-relative prefix; `""` for the whole repository.
fn repo_relative(root: &Path, cwd: &Path, p: &Path) -> Result<String, ScanError> {
    let abs = lexical(&cwd.join(p));
    let rel = abs
        .strip_prefix(root)
        .map_err(|_| ScanError::OutsideRepository {
            path: p.to_path_buf(),
            root: root.to_path_buf(),
        })?;
    Ok(rel.to_string_lossy().into_owned())
}

fn under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` with `.` and `..` resolved lexically (no symlink is followed).
pub(super) fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_components() {
        assert!(under("src/a.rs", "src"));
        assert!(under("src", "src"));
        assert!(!under("srcx/a.rs", "src"));
        assert!(under("anything", ""));
        assert_eq!(lexical(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        let root = Path::new("/repo");
        assert_eq!(
            repo_relative(root, Path::new("/repo/sub"), Path::new("../x")).unwrap(),
            "x"
        );
        assert!(repo_relative(root, Path::new("/repo"), Path::new("../etc")).is_err());
    }
}
