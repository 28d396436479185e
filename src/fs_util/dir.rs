//! A directory handle under which nothing follows a symbolic link (DESIGN §3: the repository
//! is untrusted input).
//!
//! A [`Dir`] is opened once, from a path the person gave (links in that path are theirs and
//! are followed). Every path below it is relative, made of plain names only (no `..`, no
//! absolute part), and is resolved component by component without following any link:
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` on Linux, and where that call is missing
//! (old kernels, seccomp policies, macOS) one `openat(O_NOFOLLOW)` per component. Each step is
//! relative to the directory opened before, so a directory swapped for a link while vars runs
//! cannot redirect it either. A link anywhere on the way is an error of its own kind
//! ([`is_link_refused`]), never followed, never deleted through.
//!
//! The store, the sandbox's inputs and `vars install` do all their I/O through this type;
//! `fs_util`'s path functions are for paths the person names (identity files, `--config`).

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{IoContext as _, IoError};

/// An open directory; see the module docs.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// Where it is, for messages only: never used to open anything.
    path: PathBuf,
}

/// What a directory entry is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A fifo, socket or device.
    Special,
}

impl Kind {
    /// `regular file`, `directory`, `symlink`, `special file`.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Special => "special file (fifo, socket or device)",
        }
    }
}

/// One entry of [`Dir::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its name (not necessarily UTF-8).
    pub name: OsString,
    /// What it is.
    pub kind: Kind,
}

impl Entry {
    /// The name as UTF-8, if it is.
    pub fn name_str(&self) -> Option<&str> {
        self.name.to_str()
    }
}

/// How [`Dir::create_file`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Fail if it exists.
    New,
    /// Open it for writing without truncating (the caller overwrites and sets the length).
    Reuse,
}

/// The message of the error that stands for "a symbolic link was in the way".
const LINK_REFUSED: &str = "a symbolic link is in the way, and vars never follows links here";

/// Whether `e` is the refusal to follow a link ([`Dir`] resolving a path, or opening a file).
pub fn is_link_refused(e: &IoError) -> bool {
    e.source.kind() == io::ErrorKind::Other && e.source.to_string() == LINK_REFUSED
}

/// Whether openat2 is known not to work here (ENOSYS, or refused by a seccomp policy).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

impl Dir {
    /// Open the directory at `path`, which the person named (links in it are followed).
    pub fn open(path: &Path) -> Result<Dir, IoError> {
        let fd = rustix::fs::open(path, dir_flags(), Mode::empty())
            .map_err(io::Error::from)
            .at("open directory", path)?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Where the directory is, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `rel` below this directory, for messages.
    pub fn display(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        if rel.as_os_str().is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// Open the directory `rel` below this one; `None` when it does not exist.
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<Option<Dir>, IoError> {
        let rel = rel.as_ref();
        match self.resolve(rel, dir_flags(), Mode::empty()) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: self.display(rel),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.error("open directory", rel, e)),
        }
    }

    /// Open the directory `rel`, creating it and its missing parents (mode 0755).
    pub fn create_dir_all(&self, rel: impl AsRef<Path>) -> Result<Dir, IoError> {
        let rel = rel.as_ref();
        let parts = components(rel).map_err(|e| self.error("create directory", rel, e))?;
        let mut dir = self.duplicate().at("open directory", &self.path)?;
        for part in parts {
            match rustix::fs::mkdirat(&dir.fd, part, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(self.error("create directory", rel, e)),
            }
            let fd = rustix::fs::openat(&dir.fd, part, dir_flags(), Mode::empty())
                .map_err(|e| self.error("create directory", rel, e))?;
            dir = Dir {
                fd,
                path: dir.path.join(part),
            };
        }
        Ok(dir)
    }

    /// What `rel` is, without following it; `None` when it does not exist.
    pub fn kind(&self, rel: impl AsRef<Path>) -> Result<Option<Kind>, IoError> {
        let rel = rel.as_ref();
        let (parent, name) = self.split(rel, "inspect")?;
        let Some(parent) = parent else {
            return Ok(None);
        };
        match rustix::fs::statat(&parent.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(kind_of(rustix::fs::FileType::from_raw_mode(
                st.st_mode,
            )))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(self.error("inspect", rel, e)),
        }
    }

    /// The entries of this directory, sorted by name (`.` and `..` left out).
    pub fn entries(&self) -> Result<Vec<Entry>, IoError> {
        let list = |e: Errno| self.error("list", "", e);
        let fd = self.duplicate().at("list", &self.path)?;
        let mut out = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd.fd).map_err(list)? {
            let entry = entry.map_err(list)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let kind = match entry.file_type() {
                rustix::fs::FileType::Unknown => self
                    .kind(Path::new(&name))?
                    .ok_or_else(|| self.error("list", "", Errno::NOENT))?,
                t => kind_of(t),
            };
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The content of the regular file `rel`; `None` when it does not exist. A link, or
    /// anything but a regular file, is an error. Reads at most `cap` bytes (more is an error).
    pub fn read_capped(&self, rel: impl AsRef<Path>, cap: u64) -> Result<Option<Vec<u8>>, IoError> {
        let rel = rel.as_ref();
        let fd = match self.resolve(rel, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(self.error("read", rel, e)),
        };
        let file = File::from(fd);
        let meta = file.metadata().at("read", self.display(rel))?;
        if !meta.is_file() {
            return Err(IoError {
                action: "read",
                path: self.display(rel),
                source: io::Error::other("not a regular file"),
            });
        }
        let mut buf = Vec::with_capacity(meta.len().min(cap) as usize + 1);
        file.take(cap + 1)
            .read_to_end(&mut buf)
            .at("read", self.display(rel))?;
        if buf.len() as u64 > cap {
            return Err(IoError {
                action: "read",
                path: self.display(rel),
                source: io::Error::other(format!("larger than {cap} bytes")),
            });
        }
        Ok(Some(buf))
    }

    /// The content of the regular file `rel` (at most 64 MiB); `None` when it does not exist.
    pub fn read(&self, rel: impl AsRef<Path>) -> Result<Option<Vec<u8>>, IoError> {
        self.read_capped(rel, 64 * 1024 * 1024)
    }

    /// Open the regular file `rel` for writing with `mode`, without following a link.
    pub fn create_file(
        &self,
        rel: impl AsRef<Path>,
        mode: u32,
        how: Create,
    ) -> Result<File, IoError> {
        let rel = rel.as_ref();
        let mut flags = OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW;
        if how == Create::New {
            flags |= OFlags::EXCL;
        }
        let fd = self
            .resolve(rel, flags, Mode::from_raw_mode(mode))
            .map_err(|e| self.error("create", rel, e))?;
        Ok(File::from(fd))
    }

    /// Replace the file `rel` atomically: a temporary file beside it, fsync, rename over it,
    /// fsync of the directory. A crash leaves the old content or the new, never a mix.
    pub fn write_atomic(
        &self,
        rel: impl AsRef<Path>,
        bytes: &[u8],
        mode: u32,
    ) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (parent, name) = self.split(rel, "write")?;
        let parent = match parent {
            Some(p) => p,
            None => self.create_dir_all(rel.parent().unwrap_or(Path::new("")))?,
        };
        let tmp = {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).expect("the OS has a random source");
            format!("{}{}", super::TMP_PREFIX, hex::encode(random))
        };
        let result = (|| {
            let mut f = parent.create_file(&tmp, mode, Create::New)?;
            // The umask may have narrowed the mode; the caller's mode is the contract.
            rustix::fs::fchmod(&f, Mode::from_raw_mode(mode))
                .map_err(io::Error::from)
                .at("write", parent.display(&tmp))?;
            f.write_all(bytes).at("write", parent.display(&tmp))?;
            f.sync_all().at("sync", parent.display(&tmp))?;
            rustix::fs::renameat(&parent.fd, tmp.as_str(), &parent.fd, name)
                .map_err(|e| self.error("rename into place", rel, e))?;
            parent.sync()
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&parent.fd, tmp.as_str(), AtFlags::empty());
        }
        result
    }

    /// Remove the file (or link) `rel`; nothing to do when it does not exist.
    pub fn remove_file(&self, rel: impl AsRef<Path>) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (parent, name) = self.split(rel, "remove")?;
        let Some(parent) = parent else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&parent.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.error("remove", rel, e)),
        }
    }

    /// Remove `rel` and everything below it; nothing to do when it does not exist. Links are
    /// removed, never followed: nothing outside this directory is touched.
    pub fn remove_all(&self, rel: impl AsRef<Path>) -> Result<(), IoError> {
        let rel = rel.as_ref();
        let (parent, name) = self.split(rel, "remove")?;
        let Some(parent) = parent else {
            return Ok(());
        };
        match parent.kind(name)? {
            None => Ok(()),
            Some(Kind::Dir) => {
                if let Some(dir) = parent.open_dir(name)? {
                    dir.empty_tree()?;
                }
                match rustix::fs::unlinkat(&parent.fd, name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(self.error("remove", rel, e)),
                }
            }
            Some(_) => parent.remove_file(name),
        }
    }

    /// Remove everything below this directory, depth first with one directory open at a time
    /// (a committed tree nested thousands deep must not exhaust descriptors): each level is
    /// left through its `..`, which is the directory it was entered from, since every level
    /// was opened without following a link.
    fn empty_tree(self) -> Result<(), IoError> {
        /// Delete the non-directories of `dir`; its subdirectories, to visit.
        fn files_out(dir: &Dir) -> Result<Vec<OsString>, IoError> {
            let mut subdirs = Vec::new();
            for e in dir.entries()? {
                if e.kind == Kind::Dir {
                    subdirs.push(e.name);
                } else {
                    dir.remove_file(Path::new(&e.name))?;
                }
            }
            Ok(subdirs)
        }
        let mut levels: Vec<(Option<OsString>, Vec<OsString>)> = vec![(None, files_out(&self)?)];
        let mut cur = self;
        while let Some((name, pending)) = levels.last_mut() {
            if let Some(sub) = pending.pop() {
                if let Some(next) = cur.open_dir(Path::new(&sub))? {
                    levels.push((Some(sub), files_out(&next)?));
                    cur = next;
                }
                continue;
            }
            let Some(name) = name.take() else {
                break;
            };
            levels.pop();
            let up = rustix::fs::openat(&cur.fd, "..", dir_flags(), Mode::empty())
                .map_err(|e| cur.error("open directory", "..", e))?;
            let up = Dir {
                fd: up,
                path: cur.path.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            match rustix::fs::unlinkat(&up.fd, &name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(up.error("remove", &name, e)),
            }
            cur = up;
        }
        Ok(())
    }

    /// Rename `from` (below this directory) to `to` below `to_dir`; with `exchange`, atomically
    /// swap the two (both must exist). Errors keep their errno (in `source`) so callers
    /// can fall back where a file system cannot exchange.
    pub fn rename(
        &self,
        from: impl AsRef<Path>,
        to_dir: &Dir,
        to: impl AsRef<Path>,
        exchange: bool,
    ) -> Result<(), IoError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (src_parent, src_name) = self.split(from, "rename")?;
        let (dst_parent, dst_name) = to_dir.split(to, "rename")?;
        let missing = || IoError {
            action: "rename",
            path: self.display(from),
            source: io::Error::from(Errno::NOENT),
        };
        let src_parent = src_parent.ok_or_else(missing)?;
        let dst_parent = dst_parent.ok_or_else(missing)?;
        let result = if exchange {
            rustix::fs::renameat_with(
                &src_parent.fd,
                src_name,
                &dst_parent.fd,
                dst_name,
                rustix::fs::RenameFlags::EXCHANGE,
            )
        } else {
            rustix::fs::renameat(&src_parent.fd, src_name, &dst_parent.fd, dst_name)
        };
        result.map_err(|e| to_dir.error(if exchange { "swap in" } else { "rename" }, to, e))
    }

    /// fsync the directory, so renames inside it are durable.
    pub fn sync(&self) -> Result<(), IoError> {
        rustix::fs::fsync(&self.fd)
            .map_err(io::Error::from)
            .at("sync directory", &self.path)
    }

    /// Flush everything written to this directory's file system (Linux `syncfs(2)`).
    #[cfg(target_os = "linux")]
    pub fn sync_fs(&self) -> Result<(), IoError> {
        rustix::fs::syncfs(&self.fd)
            .map_err(io::Error::from)
            .at("sync the file system of", &self.path)
    }

    /// A second handle on the same directory.
    pub fn duplicate(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// The open directory, for `*at` calls of callers in this crate.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The parent directory of `rel` (opened, `None` when missing) and its last component.
    fn split<'r>(
        &self,
        rel: &'r Path,
        action: &'static str,
    ) -> Result<(Option<Dir>, &'r Path), IoError> {
        let parts = components(rel).map_err(|e| self.error(action, rel, e))?;
        let Some((name, _)) = parts.split_last() else {
            return Err(self.error(action, rel, Errno::INVAL));
        };
        let parent = match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            None => Some(self.duplicate().at(action, &self.path)?),
            Some(p) => self.open_dir(p)?,
        };
        Ok((parent, Path::new(*name)))
    }

    /// Open `rel` with `flags` without following any link.
    fn resolve(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        let parts = components(rel)?;
        if parts.is_empty() {
            return Err(Errno::INVAL);
        }
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        #[cfg(target_os = "linux")]
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            use rustix::fs::ResolveFlags;
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, rel, flags, mode, resolve) {
                // EPERM: a seccomp policy that refuses openat2 (some container runtimes).
                Err(Errno::NOSYS | Errno::PERM) => NO_OPENAT2.store(true, Ordering::Relaxed),
                // openat2 reports a link on the way with ELOOP, EXDEV or (O_DIRECTORY) ENOTDIR;
                // ask the walk, which tells a link apart from a missing directory.
                Err(Errno::LOOP | Errno::XDEV | Errno::NOTDIR) => {}
                other => return other,
            }
        }
        let _ = &NO_OPENAT2;
        let (last, dirs) = parts.split_last().expect("not empty");
        let mut owned: Option<OwnedFd> = None;
        for part in dirs {
            let at = owned.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let next = rustix::fs::openat(at, *part, dir_flags(), Mode::empty())
                .map_err(|e| link_or(at, part, e))?;
            owned = Some(next);
        }
        let at = owned.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        rustix::fs::openat(at, *last, flags, mode).map_err(|e| link_or(at, last, e))
    }

    fn error(&self, action: &'static str, rel: impl AsRef<Path>, e: Errno) -> IoError {
        let source = if e == LINK {
            io::Error::other(LINK_REFUSED)
        } else {
            io::Error::from(e)
        };
        IoError {
            action,
            path: self.display(rel),
            source,
        }
    }
}

/// Stands for "a link was in the way" between [`Dir::resolve`] and [`Dir::error`]: `ELOOP`
/// is what `O_NOFOLLOW` gives for a link, and nothing else in a walk of plain names gives it.
const LINK: Errno = Errno::LOOP;

/// `e`, or [`LINK`] when `name` in `at` turns out to be a link (a directory component that is
/// a link fails with `ENOTDIR` on some systems).
fn link_or(at: std::os::fd::BorrowedFd<'_>, name: &std::ffi::OsStr, e: Errno) -> Errno {
    if matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::MLINK)
        && rustix::fs::statat(at, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
        })
    {
        LINK
    } else if e == Errno::LOOP {
        // ELOOP without a link at this component: a link deeper down (openat2 cannot tell).
        LINK
    } else {
        e
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

/// The plain names of a relative path; `..`, `.`, a root or a prefix are refused.
fn components(rel: &Path) -> Result<Vec<&std::ffi::OsStr>, Errno> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(Errno::INVAL),
        })
        .collect()
}

fn kind_of(t: rustix::fs::FileType) -> Kind {
    use rustix::fs::FileType as T;
    match t {
        T::RegularFile => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        _ => Kind::Special,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Dir) {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"outside").unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::fs::write(root.path().join("a/b/f"), b"inside").unwrap();
        symlink(outside.path(), root.path().join("a/out")).unwrap();
        symlink(outside.path().join("secret"), root.path().join("a/b/link")).unwrap();
        symlink("/nonexistent/dangling", root.path().join("a/dangling")).unwrap();
        let dir = Dir::open(root.path()).unwrap();
        (root, outside, dir)
    }

    fn both_ways(test: impl Fn()) {
        NO_OPENAT2.store(false, Ordering::Relaxed);
        test();
        NO_OPENAT2.store(true, Ordering::Relaxed);
        test();
        NO_OPENAT2.store(false, Ordering::Relaxed);
    }

    #[test]
    fn reads_beneath_and_refuses_every_link() {
        let (_root, _outside, dir) = setup();
        both_ways(|| {
            assert_eq!(dir.read("a/b/f").unwrap().unwrap(), b"inside");
            assert_eq!(dir.read("a/b/missing").unwrap(), None);
            assert_eq!(dir.read("a/nodir/missing").unwrap(), None);
            for rel in ["a/b/link", "a/out/secret", "a/dangling"] {
                let err = dir.read(rel).unwrap_err();
                assert!(is_link_refused(&err), "{rel}: {err}");
            }
            assert!(dir.open_dir("a/out").is_err_and(|e| is_link_refused(&e)));
            for bad in ["../x", "/etc/passwd", "a/../a/b/f", ""] {
                assert!(dir.read(bad).is_err(), "{bad}");
            }
        });
    }

    #[test]
    fn writes_never_go_through_links() {
        let (root, outside, dir) = setup();
        both_ways(|| {
            assert!(dir.write_atomic("a/out/secret", b"x", 0o644).is_err());
            assert!(dir.create_file("a/b/link", 0o644, Create::Reuse).is_err());
            assert!(dir.create_file("a/dangling", 0o644, Create::New).is_err());
            assert!(dir.create_dir_all("a/out/deeper").is_err());
        });
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"outside"
        );
        assert!(!Path::new("/nonexistent/dangling").exists());
        dir.write_atomic("a/new/file", b"ok", 0o600).unwrap();
        assert_eq!(
            std::fs::read(root.path().join("a/new/file")).unwrap(),
            b"ok"
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.path().join("a/new/file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn remove_all_deletes_links_not_their_targets() {
        let (root, outside, dir) = setup();
        dir.remove_all("a").unwrap();
        assert!(!root.path().join("a").exists());
        assert_eq!(
            std::fs::read(outside.path().join("secret")).unwrap(),
            b"outside"
        );
        dir.remove_all("a").unwrap();
    }

    #[test]
    fn entries_report_kinds_without_following() {
        let (_root, _outside, dir) = setup();
        let a = dir.open_dir("a").unwrap().unwrap();
        let kinds: Vec<(String, Kind)> = a
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.name_str().unwrap().to_owned(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("b".to_owned(), Kind::Dir),
                ("dangling".to_owned(), Kind::Symlink),
                ("out".to_owned(), Kind::Symlink)
            ]
        );
        assert_eq!(dir.kind("a/b/f").unwrap(), Some(Kind::File));
        assert_eq!(dir.kind("a/zzz").unwrap(), None);
    }

    #[test]
    fn rename_and_exchange() {
        let (root, _outside, dir) = setup();
        let a = dir.open_dir("a").unwrap().unwrap();
        dir.create_dir_all("x").unwrap();
        dir.write_atomic("x/f", b"x", 0o644).unwrap();
        match dir.rename("x", &a, "b", true) {
            Ok(()) => {
                assert_eq!(std::fs::read(root.path().join("a/b/f")).unwrap(), b"x");
                assert_eq!(std::fs::read(root.path().join("x/f")).unwrap(), b"inside");
            }
            // A file system without exchange (the caller falls back).
            Err(e) => assert!(e.source.raw_os_error().is_some(), "{e}"),
        }
        dir.rename("x", &a, "y", false).unwrap();
        assert!(root.path().join("a/y").is_dir());
    }
}
