//! Generations on the mount point (`NIX.md` §2 steps 7–14): which one is running, writing
//! the next one, reading the running one back to compare plaintext, the atomic switch of the
//! target symlink, the links, and pruning.
//!
//! A generation is a directory `<mount-point>/<N>`; the target (`/run/vars`) is a symlink to
//! it. Everything below the mount point goes through a [`Dir`] handle, so nothing follows a
//! link there: directories are made with mode 0 and then chowned and chmodded (0751
//! `root:keys`, or 0700 in user mode); files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`,
//! mode 0, written, then chowned and chmodded, so no one can open one before its owner and
//! mode are final. The switch makes a new symlink beside the target and renames it over the
//! target: readers see the old generation or the new one, never a mix.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Gid, Mode, Uid};

use super::Problem;
use super::owners::Ids;
use crate::fs_util::{Create, Dir, IoContext as _, IoError, Kind};
use crate::secret::SecretBytes;

/// Owner and mode of the mount point and of the directories of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DirOwner {
    /// 0751 `root:<gid>`: services traverse without being in the group (sops #86).
    Root {
        /// `keys`, `nogroup` or 0.
        gid: u32,
    },
    /// 0700, the running user's (user mode).
    Own,
}

impl DirOwner {
    fn apply(self, dir: &Dir) -> Result<(), IoError> {
        let mode = match self {
            DirOwner::Root { gid } => {
                rustix::fs::fchown(dir.as_fd(), Some(Uid::ROOT), Some(Gid::from_raw(gid)))
                    .map_err(std::io::Error::from)
                    .at("change the owner of", dir.path())?;
                0o751
            }
            DirOwner::Own => 0o700,
        };
        rustix::fs::fchmod(dir.as_fd(), Mode::from_raw_mode(mode))
            .map_err(std::io::Error::from)
            .at("change the mode of", dir.path())
    }
}

/// Create `path` and its parents; the last one, when new, gets mode 0751.
pub(super) fn create_dir_751(path: &Path) -> Result<(), IoError> {
    create_dir(path, 0o751)
}

/// Create `path` and its parents (user mode); the last one, when new, gets mode 0700.
pub(super) fn create_private_dir(path: &Path) -> Result<(), IoError> {
    create_dir(path, 0o700)
}

fn create_dir(path: &Path, mode: u32) -> Result<(), IoError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_parents(parent)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).at("create directory", path),
    }
    // The umask may have narrowed the mode.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .at("change the mode of", path)
}

/// Give the mount point its owner and mode (0751 `root:keys`).
pub(super) fn own_mount_point(mount: &Dir, dirs: DirOwner) -> Result<(), IoError> {
    dirs.apply(mount)
}

/// Wait for any other `vars install` with a target in the same directory, and hold it off
/// until the returned handle is dropped. The lock is on the target's parent directory, which
/// exists before and after the mount (a lock on the mount point would be on the directory
/// below the mount for one process and on the mounted root for the next).
pub(super) fn lock(target: &Path) -> Result<Dir, IoError> {
    let (parent, _) = split(target)?;
    rustix::fs::flock(parent.as_fd(), FlockOperation::LockExclusive)
        .map_err(std::io::Error::from)
        .at("lock", parent.path())?;
    Ok(parent)
}

/// What is at the target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replace {
    /// Nothing, or a symlink: the rename replaces it.
    Rename,
    /// A file or an empty directory, removed just before the switch.
    Remove,
}

/// The running generation, as the target says.
#[derive(Debug, Clone, Copy)]
pub(super) struct Running {
    /// Its number, when the target is a symlink to `<mount-point>/<N>` and that exists.
    pub current: Option<u64>,
    /// What the switch does with the target.
    pub replace: Replace,
}

impl Running {
    /// Look at the target. A non-empty directory there is a problem (vars removes only what
    /// it could have made: a link, a file, an empty directory).
    pub(super) fn find(target: &Path, mount_point: &Path, problems: &mut Vec<Problem>) -> Self {
        let mut running = Running {
            current: None,
            replace: Replace::Rename,
        };
        let subject = || format!("--target {}", target.display());
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => problems.push(Problem::new(subject(), e.to_string())),
            Ok(m) if m.file_type().is_symlink() => {
                running.current = std::fs::read_link(target)
                    .ok()
                    .and_then(|to| number_in(&to, mount_point))
                    .filter(|n| {
                        std::fs::symlink_metadata(mount_point.join(n.to_string()))
                            .is_ok_and(|m| m.is_dir())
                    });
            }
            Ok(m) if m.is_dir() => match std::fs::read_dir(target).map(|mut d| d.next().is_none()) {
                Ok(true) => running.replace = Replace::Remove,
                _ => problems.push(Problem::new(
                    subject(),
                    "is a directory that is not empty, not a symbolic link to a generation; move it away",
                )),
            },
            Ok(_) => running.replace = Replace::Remove,
        }
        running
    }
}

/// `N` when `to` is `<mount_point>/<N>`.
fn number_in(to: &Path, mount_point: &Path) -> Option<u64> {
    let rest = to.strip_prefix(mount_point).ok()?;
    let mut parts = rest.components();
    let n = parts.next()?.as_os_str().to_str()?;
    if parts.next().is_some() {
        return None;
    }
    generation_number(n)
}

/// A generation directory's number (`"7"` → 7; no sign, no leading zero).
fn generation_number(name: &str) -> Option<u64> {
    let digits = !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit());
    let canonical = name == "0" || !name.starts_with('0');
    (digits && canonical).then(|| name.parse().ok()).flatten()
}

/// The generations on the mount point.
fn generations(mount: &Dir) -> Result<Vec<u64>, IoError> {
    Ok(mount
        .entries()?
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .filter_map(|e| generation_number(e.name_str()?))
        .collect())
}

/// The number of the generation to write: the running one + 1, or, with none running (boot,
/// a target that was removed), one past the highest on the mount point.
pub(super) fn next(mount: &Dir, current: Option<u64>) -> Result<u64, IoError> {
    Ok(match current {
        Some(n) => n + 1,
        None => generations(mount)?.into_iter().max().unwrap_or(0) + 1,
    })
}

/// One file of a new generation.
pub(super) struct NewFile<'a> {
    /// Path relative to the generation.
    pub rel: &'a str,
    /// What to write.
    pub plaintext: &'a SecretBytes,
    /// Owner and group; `None` leaves the running user's.
    pub ids: Option<Ids>,
    /// Permission bits.
    pub mode: u32,
}

/// Write generation `n` (replacing a stale directory of that number). On failure the
/// partial directory is removed again and the running generation is untouched.
pub(super) fn write(
    mount: &Dir,
    n: u64,
    files: &[NewFile<'_>],
    dirs: DirOwner,
) -> Result<PathBuf, IoError> {
    let name = n.to_string();
    mount.remove_all(&name)?;
    let result = (|| {
        let root = make_dir(mount, &name, dirs)?;
        let mut made: BTreeMap<String, Dir> = BTreeMap::new();
        for f in files {
            let (parent, file) = match f.rel.rsplit_once('/') {
                Some((p, file)) => (p, file),
                None => ("", f.rel),
            };
            let mut at = String::new();
            for part in parent.split('/').filter(|p| !p.is_empty()) {
                let above = if at.is_empty() { &root } else { &made[&at] };
                let next = if at.is_empty() {
                    part.to_owned()
                } else {
                    format!("{at}/{part}")
                };
                if !made.contains_key(&next) {
                    let dir = make_dir(above, part, dirs)?;
                    made.insert(next.clone(), dir);
                }
                at = next;
            }
            let dir = if at.is_empty() { &root } else { &made[&at] };
            write_file(dir, file, f)?;
        }
        Ok(root.path().to_path_buf())
    })();
    if result.is_err() {
        let _ = mount.remove_all(&name);
    }
    result
}

/// `name` in `parent`, made with mode 0 (0700 in user mode, where the owner could not open
/// it otherwise) and then given its owner and mode.
fn make_dir(parent: &Dir, name: &str, dirs: DirOwner) -> Result<Dir, IoError> {
    let mode = match dirs {
        DirOwner::Root { .. } => Mode::empty(),
        DirOwner::Own => Mode::from_raw_mode(0o700),
    };
    rustix::fs::mkdirat(parent.as_fd(), name, mode)
        .map_err(std::io::Error::from)
        .at("create directory", parent.display(name))?;
    let dir = parent
        .open_dir(name)?
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        .at("open directory", parent.display(name))?;
    dirs.apply(&dir)?;
    Ok(dir)
}

fn write_file(dir: &Dir, name: &str, f: &NewFile<'_>) -> Result<(), IoError> {
    let path = dir.display(name);
    let mut file = dir.create_file(name, 0, Create::New)?;
    file.write_all(f.plaintext.expose()).at("write", &path)?;
    if let Some(ids) = f.ids {
        rustix::fs::fchown(
            &file,
            Some(Uid::from_raw(ids.uid)),
            Some(Gid::from_raw(ids.gid)),
        )
        .map_err(std::io::Error::from)
        .at("change the owner of", &path)?;
    }
    rustix::fs::fchmod(&file, Mode::from_raw_mode(f.mode))
        .map_err(std::io::Error::from)
        .at("change the mode of", &path)
}

/// Every regular file of generation `n`, by path relative to it (links and special files
/// are not followed and not read).
pub(super) fn read(mount: &Dir, n: u64) -> Result<BTreeMap<String, SecretBytes>, IoError> {
    let mut out = BTreeMap::new();
    if let Some(dir) = mount.open_dir(n.to_string())? {
        read_into(&dir, "", &mut out)?;
    }
    Ok(out)
}

fn read_into(
    dir: &Dir,
    prefix: &str,
    out: &mut BTreeMap<String, SecretBytes>,
) -> Result<(), IoError> {
    for e in dir.entries()? {
        let Some(name) = e.name_str() else { continue };
        let rel = format!("{prefix}{name}");
        match e.kind {
            Kind::File => {
                if let Some(bytes) = dir.read_capped(name, 2 * crate::sandbox::MAX_OUTPUT_BYTES)? {
                    out.insert(rel, SecretBytes::new(bytes));
                }
            }
            Kind::Dir => {
                if let Some(sub) = dir.open_dir(name)? {
                    read_into(&sub, &format!("{rel}/"), out)?;
                }
            }
            Kind::Symlink | Kind::Special => {}
        }
    }
    Ok(())
}

/// Point `target` at generation `n`: a new symlink beside it, renamed over it.
pub(super) fn switch(
    target: &Path,
    mount_point: &Path,
    n: u64,
    replace: Replace,
) -> Result<(), IoError> {
    let (parent, name) = split(target)?;
    if replace == Replace::Remove {
        parent.remove_all(name)?;
    }
    replace_with_link(&parent, name, &mount_point.join(n.to_string()), None)
}

/// The parent directory of an absolute path (created when missing) and its last name.
fn split(path: &Path) -> Result<(Dir, &std::ffi::OsStr), IoError> {
    let bad = || std::io::Error::other("has no parent directory and file name");
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(bad()).at("use", path);
    };
    create_parents(parent)?;
    Ok((Dir::open(parent)?, name))
}

/// Create `dir` and its missing parents with mode 0755 whatever the umask (a unit's
/// `UMask=0077` would otherwise hide a link's directory from the service that reads it).
fn create_parents(dir: &Path) -> Result<(), IoError> {
    use std::os::unix::fs::PermissionsExt as _;
    let missing: Vec<&Path> = dir.ancestors().take_while(|p| !p.exists()).collect();
    for p in missing.into_iter().rev() {
        match std::fs::create_dir(p) {
            Ok(()) => std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))
                .at("change the mode of", p)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).at("create directory", p),
        }
    }
    Ok(())
}

/// Make `name` in `parent` a symlink to `to`, atomically: a temporary link, chowned
/// (`lchown`) when `ids` are given, renamed over `name`.
fn replace_with_link(
    parent: &Dir,
    name: &std::ffi::OsStr,
    to: &Path,
    ids: Option<Ids>,
) -> Result<(), IoError> {
    let tmp = {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS has a random source");
        format!("{}{}", crate::fs_util::TMP_PREFIX, hex::encode(random))
    };
    let result = (|| {
        rustix::fs::symlinkat(to, parent.as_fd(), tmp.as_str())
            .map_err(std::io::Error::from)
            .at("create a symbolic link in", parent.path())?;
        if let Some(ids) = ids {
            rustix::fs::chownat(
                parent.as_fd(),
                tmp.as_str(),
                Some(Uid::from_raw(ids.uid)),
                Some(Gid::from_raw(ids.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(std::io::Error::from)
            .at("change the owner of", parent.display(&tmp))?;
        }
        rustix::fs::renameat(parent.as_fd(), tmp.as_str(), parent.as_fd(), name)
            .map_err(std::io::Error::from)
            .at("rename into place", parent.display(name))
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(parent.as_fd(), tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Problems with a link, found before anything is written: inside the target or the mount
/// point, or something that is not a link already there (vars replaces only links).
pub(super) fn check_link_place(link: &Path, target: &Path, mount_point: &Path) -> Vec<Problem> {
    let subject = || format!("link {}", link.display());
    if link.starts_with(target) || link.starts_with(mount_point) {
        return vec![Problem::new(
            subject(),
            "is inside the target or the mount point",
        )];
    }
    match std::fs::symlink_metadata(link) {
        Ok(m) if !m.file_type().is_symlink() => vec![Problem::new(
            subject(),
            "exists and is not a symbolic link (vars replaces only links): move it away",
        )],
        _ => Vec::new(),
    }
}

/// Make the link `link` → `to` (through the target, so it follows later switches).
pub(super) fn link(link: &Path, to: &Path, ids: Option<Ids>) -> Result<(), IoError> {
    let (parent, name) = split(link)?;
    if matches!(parent.kind(name)?, Some(k) if k != Kind::Symlink) {
        return Err(std::io::Error::other("exists and is not a symbolic link")).at("link", link);
    }
    replace_with_link(&parent, name, to, ids)
}

/// Remove generations `m ≤ n − keep` (never `n`); `keep` 0 prunes nothing.
pub(super) fn prune(mount: &Dir, n: u64, keep: u64) -> Result<Vec<u64>, IoError> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let mut pruned = Vec::new();
    for m in generations(mount)? {
        if m != n && m.saturating_add(keep) <= n {
            mount.remove_all(m.to_string())?;
            pruned.push(m);
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_numbers_are_plain_decimals() {
        assert_eq!(generation_number("7"), Some(7));
        assert_eq!(generation_number("0"), Some(0));
        for bad in ["", "07", "-1", "+1", "1a", "x", "99999999999999999999999"] {
            assert_eq!(generation_number(bad), None, "{bad}");
        }
        let m = Path::new("/run/vars.d");
        assert_eq!(number_in(Path::new("/run/vars.d/3"), m), Some(3));
        assert_eq!(number_in(Path::new("/run/vars.d/3/x"), m), None);
        assert_eq!(number_in(Path::new("/elsewhere/3"), m), None);
    }
}
