//! The file system generations live on: a RAM file system mounted at the mount point, so
//! plaintext never reaches a disk (DESIGN §9.1).
//!
//! Linux: ramfs (never swapped), or tmpfs with `noswap` on request (`--tmpfs`; without
//! `noswap` on kernels before 6.4), mounted with `mount(2)` (`nodev,nosuid,noexec,mode=0751`)
//! when the mount point is not one already. "Already" means both: `statfs` says ramfs or
//! tmpfs, **and** `/proc/self/mountinfo` lists that exact path. The magic alone is not
//! enough: a directory in `/run` (itself a tmpfs) has the tmpfs magic without being a mount
//! of its own. Either RAM file system counts: switching ramfs ↔ tmpfs takes effect at the
//! next boot instead of stacking a second mount over live generations.
//!
//! macOS (untested here: no Mac in CI): a RAM disk made with `hdiutil attach -nomount
//! ram://…`, formatted with `newfs_hfs` and mounted `nobrowse,nodev,nosuid,-m=0751`, marked by
//! a file at its root because macOS has no file-system magic to recognise it by (as sops-nix's
//! darwin.go does).

use std::path::{Path, PathBuf};

use super::InstallError;

/// A RAM file system vars mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// Linux ramfs: never swapped.
    Ramfs,
    /// Linux tmpfs (`--tmpfs`), with `noswap` where the kernel has it.
    Tmpfs,
    /// A macOS RAM disk (hdiutil).
    RamDisk,
}

impl FsKind {
    /// `ramfs`, `tmpfs`, `RAM disk`.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ramfs => "ramfs",
            FsKind::Tmpfs => "tmpfs",
            FsKind::RamDisk => "RAM disk",
        }
    }
}

/// Whether `path`, or its nearest existing ancestor when it does not exist yet, is on a RAM
/// file system; `None` where the system cannot tell.
pub(super) fn ram_backed_dir(path: &Path) -> Option<bool> {
    let existing = path.ancestors().find(|p| p.exists())?;
    ram_backed(existing)
}

#[cfg(target_os = "linux")]
fn ram_backed(path: &Path) -> Option<bool> {
    Some(magic(path).is_some())
}

#[cfg(not(target_os = "linux"))]
fn ram_backed(path: &Path) -> Option<bool> {
    // The marker says it is our RAM disk; anything else cannot be told apart from a disk.
    path.join(MARKER).is_file().then_some(true)
}

/// Mount a RAM file system at `mount_point` unless one is mounted there; returns what it
/// mounted. Creates the mount point (0751) when missing.
pub(super) fn ensure(
    mount_point: &Path,
    tmpfs: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<FsKind>, InstallError> {
    let fail = |fs: FsKind, reason: String| InstallError::Mount {
        path: mount_point.to_path_buf(),
        fs: fs.name(),
        reason,
    };
    super::generation::create_dir_751(mount_point)?;
    let here = mount_point
        .canonicalize()
        .map_err(|e| fail(FsKind::Ramfs, e.to_string()))?;
    if mounted_here(&here).map_err(|e| fail(FsKind::Ramfs, e))? {
        return Ok(None);
    }
    mount(&here, tmpfs, warnings).map_err(|(fs, e)| fail(fs, e))
}

/// Whether a RAM file system is mounted at exactly `path` (canonical).
#[cfg(target_os = "linux")]
fn mounted_here(path: &Path) -> Result<bool, String> {
    if magic(path).is_none() {
        return Ok(false);
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    Ok(mount_points(&info).iter().any(|p| p == path))
}

#[cfg(target_os = "linux")]
fn mount(
    path: &Path,
    tmpfs: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<FsKind>, (FsKind, String)> {
    use rustix::mount::MountFlags;
    let flags = MountFlags::NODEV | MountFlags::NOSUID | MountFlags::NOEXEC;
    let (fs, kind, data) = if tmpfs {
        ("tmpfs", FsKind::Tmpfs, c"mode=0751,noswap")
    } else {
        ("ramfs", FsKind::Ramfs, c"mode=0751")
    };
    match rustix::mount::mount("none", path, fs, flags, data) {
        Ok(()) => Ok(Some(kind)),
        // Kernels before 6.4 have no `noswap`.
        Err(rustix::io::Errno::INVAL) if tmpfs => {
            rustix::mount::mount("none", path, fs, flags, c"mode=0751")
                .map_err(|e| (kind, e.to_string()))?;
            warnings.push(format!(
                "this kernel's tmpfs has no noswap: secrets at {} may be swapped out (ramfs, the default, never is)",
                path.display()
            ));
            Ok(Some(kind))
        }
        Err(e) => Err((kind, e.to_string())),
    }
}

/// The mount points listed in `/proc/self/mountinfo` (field 5, with `\NNN` octal escapes).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn mount_points(info: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt as _;
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            let raw = field.as_bytes();
            let mut out = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                let octal = raw
                    .get(i + 1..i + 4)
                    .filter(|d| raw[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
                match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 4;
                    }
                    None => {
                        out.push(raw[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// The RAM file system `path` is on, from `statfs`'s magic.
#[cfg(target_os = "linux")]
fn magic(path: &Path) -> Option<FsKind> {
    const RAMFS_MAGIC: u32 = 0x8584_58f6;
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    // f_type is i64, u32 or u64 depending on the architecture; the magics fit in 32 bits.
    #[allow(clippy::unnecessary_cast)]
    match rustix::fs::statfs(path).ok()?.f_type as u32 {
        RAMFS_MAGIC => Some(FsKind::Ramfs),
        TMPFS_MAGIC => Some(FsKind::Tmpfs),
        _ => None,
    }
}

/// The file marking a macOS RAM disk as vars'.
#[cfg(not(target_os = "linux"))]
const MARKER: &str = ".vars-ramdisk";

#[cfg(not(target_os = "linux"))]
fn mounted_here(path: &Path) -> Result<bool, String> {
    Ok(path.join(MARKER).is_file())
}

/// hdiutil, newfs_hfs and mount, each by absolute path with a cleared environment: there
/// is no public API to mount an HFS RAM disk (sops-nix darwin.go does the same).
#[cfg(target_os = "macos")]
fn mount(
    path: &Path,
    _tmpfs: bool,
    _warnings: &mut Vec<String>,
) -> Result<Option<FsKind>, (FsKind, String)> {
    let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<String, (FsKind, String)> {
        let out = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| (FsKind::RamDisk, format!("cannot run {program}: {e}")))?;
        if !out.status.success() {
            return Err((
                FsKind::RamDisk,
                format!(
                    "{program} failed ({}): {}",
                    out.status,
                    crate::text::escape(String::from_utf8_lossy(&out.stderr).trim())
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    // 64 MiB in 512-byte sectors.
    let device = run(
        "/usr/bin/hdiutil",
        &[
            "attach".as_ref(),
            "-nomount".as_ref(),
            "ram://131072".as_ref(),
        ],
    )?;
    let device = std::ffi::OsString::from(device);
    run("/sbin/newfs_hfs", &["-s".as_ref(), device.as_os_str()])?;
    run(
        "/sbin/mount",
        &[
            "-t".as_ref(),
            "hfs".as_ref(),
            "-o".as_ref(),
            "nobrowse,nodev,nosuid,-m=0751".as_ref(),
            device.as_os_str(),
            path.as_os_str(),
        ],
    )?;
    std::fs::write(path.join(MARKER), b"")
        .map_err(|e| (FsKind::RamDisk, format!("cannot mark the RAM disk: {e}")))?;
    Ok(Some(FsKind::RamDisk))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn mount(
    _path: &Path,
    _tmpfs: bool,
    _warnings: &mut Vec<String>,
) -> Result<Option<FsKind>, (FsKind, String)> {
    Err((
        FsKind::Ramfs,
        "this system has no RAM file system vars knows how to mount; use --user-mode with a directory on one".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        let info = "22 1 0:21 / /run rw,nosuid - tmpfs tmpfs rw\n\
                    63 22 0:39 / /run/my\\040vars.d rw - ramfs none rw,mode=751\n\
                    64 22 0:40 / /run/back\\134slash rw - ramfs none rw\n";
        assert_eq!(
            mount_points(info),
            [
                PathBuf::from("/run"),
                PathBuf::from("/run/my vars.d"),
                PathBuf::from("/run/back\\slash")
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_on_tmpfs_is_in_memory_but_not_a_mount() {
        let t = tempfile::tempdir_in("/dev/shm").unwrap();
        let missing = t.path().join("not/yet");
        assert_eq!(ram_backed_dir(&missing), Some(true));
        assert!(!mounted_here(&t.path().canonicalize().unwrap()).unwrap());
        assert!(mounted_here(Path::new("/dev/shm")).unwrap());
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        assert_eq!(ram_backed_dir(disk.path()), Some(false));
    }
}
