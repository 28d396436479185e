//! The private per-run work dir and its lifecycle.
//!
//! Each run gets `<root>/vars-<pidns>-<pid>-XXXXXX/` (mode 0700) on a RAM-backed file system, where `<root>`
//! is `$VARS_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR`, else `/dev/shm` (DESIGN §6: plaintext must
//! never touch a persistent disk). Layout:
//!
//! ```text
//! out/            the script's only writable place ($out)
//! in/<dep>/<file> dependency outputs ($in)
//! prompts/<name>  prompt values ($prompts)
//! bin/  core/     symlinks to runtime inputs / the core set (see programs.rs)
//! tmp/            $TMPDIR and working directory when there is no bwrap tmpfs
//! script          the generator script, run as `bash -euo pipefail script`
//! etc/            bwrap only: the sandbox's /etc (see bwrap.rs)
//! ```
//!
//! A [`WorkDir`] removes itself when dropped (success, error, panic). Dirs of processes that
//! were killed outright (SIGKILL, OOM) are swept by the next vars run that uses the same root. Live work dirs, and the
//! process group running in each, are kept in a global registry so that the signal handler
//! installed by [`install_interrupt_cleanup`] (SIGINT, SIGTERM, SIGHUP, SIGQUIT) can kill the
//! runs and remove the dirs before the process exits.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use rustix::process::{Pid, Signal};

use super::programs::Programs;
use super::{Job, SandboxError};
use crate::env;
use crate::fs_util::{self, IoContext};

/// Home directory the script sees; it does not exist (the Nix convention), so nothing can be
/// read from or written to a home.
pub(crate) const HOMELESS: &str = "/homeless-shelter";

struct LiveRun {
    id: u64,
    dir: PathBuf,
    group: Option<Pid>,
}

static LIVE: Mutex<Vec<LiveRun>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn live() -> MutexGuard<'static, Vec<LiveRun>> {
    // A panic while holding the lock leaves the list itself consistent (every mutation is a
    // single push/retain/assignment), so a poisoned lock is still usable.
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Pick the directory that holds work dirs and check that it is RAM-backed.
pub(crate) fn runtime_root(override_root: Option<&Path>) -> Result<PathBuf, SandboxError> {
    if let Some(root) = override_root {
        return checked_root(root.to_path_buf(), "the job's work_root");
    }
    if let Some(root) = std::env::var_os(env::RUNTIME_DIR).filter(|v| !v.is_empty()) {
        return checked_root(PathBuf::from(root), env::RUNTIME_DIR);
    }
    if let Some(root) = std::env::var_os(env::XDG_RUNTIME_DIR).filter(|v| !v.is_empty()) {
        let root = PathBuf::from(root);
        // A stale or disk-backed XDG_RUNTIME_DIR (some containers, su sessions) is skipped
        // rather than fatal: /dev/shm is a fine fallback.
        if root.is_dir() && is_ram_backed(&root) {
            return Ok(root);
        }
    }
    default_root()
}

#[cfg(target_os = "linux")]
fn default_root() -> Result<PathBuf, SandboxError> {
    checked_root(PathBuf::from("/dev/shm"), "/dev/shm")
}

/// macOS has no tmpfs by default; `$TMPDIR` is a per-user 0700 directory on the (normally
/// FileVault-encrypted) system volume. Users who want RAM can point `VARS_RUNTIME_DIR` at a
/// RAM disk.
#[cfg(not(target_os = "linux"))]
fn default_root() -> Result<PathBuf, SandboxError> {
    Ok(std::env::temp_dir())
}

fn checked_root(root: PathBuf, origin: &'static str) -> Result<PathBuf, SandboxError> {
    fs::metadata(&root).at("use runtime directory", &root)?;
    if is_ram_backed(&root) {
        Ok(root)
    } else {
        Err(SandboxError::RuntimeDirNotTmpfs { path: root, origin })
    }
}

#[cfg(target_os = "linux")]
fn is_ram_backed(path: &Path) -> bool {
    const TMPFS_MAGIC: u32 = 0x0102_1994;
    const RAMFS_MAGIC: u32 = 0x8584_58f6;
    // f_type is i64, u32 or u64 depending on the architecture; the magics fit in 32 bits.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| matches!(s.f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC))
}

#[cfg(not(target_os = "linux"))]
fn is_ram_backed(_path: &Path) -> bool {
    // No portable way to tell; the choice of root is the user's (see default_root).
    true
}

/// A live work dir; removed (and unregistered) on drop.
pub(crate) struct WorkDir {
    id: u64,
    path: PathBuf,
}

impl WorkDir {
    /// Create and register a fresh 0700 work dir under `root`.
    pub(crate) fn create(root: &Path) -> Result<Self, SandboxError> {
        sweep_stale(root);
        // Create while holding the registry lock, so the interrupt handler (which takes the
        // lock and never releases it) cannot miss a dir that exists but is not yet registered.
        let mut live = live();
        let path = tempfile::Builder::new()
            .prefix(owner_prefix())
            .permissions(fs::Permissions::from_mode(0o700))
            .tempdir_in(root)
            .at("create a work directory in", root)?
            .keep();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        live.push(LiveRun {
            id,
            dir: path.clone(),
            group: None,
        });
        Ok(WorkDir { id, path })
    }

    /// The work dir itself.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `out/`, the only place the script may write.
    pub(crate) fn out(&self) -> PathBuf {
        self.path.join("out")
    }

    /// Start `cmd` (made a process group leader by the caller) and record its group for the
    /// interrupt handler in one step: the handler waits for the list's lock, so a signal that
    /// arrives while the child starts still finds and kills it.
    pub(crate) fn spawn_group(
        &self,
        cmd: &mut std::process::Command,
    ) -> std::io::Result<std::process::Child> {
        let mut live = live();
        let child = cmd.spawn()?;
        if let Some(run) = live.iter_mut().find(|r| r.id == self.id) {
            run.group = Some(Pid::from_child(&child));
        }
        Ok(child)
    }

    /// Record (or clear) the process group running in this dir, for the interrupt handler.
    pub(crate) fn set_group(&self, group: Option<Pid>) {
        if let Some(run) = live().iter_mut().find(|r| r.id == self.id) {
            run.group = group;
        }
    }

    /// Write the script, inputs, prompts and program links (bwrap adds its `/etc`).
    pub(crate) fn populate(&self, job: &Job, programs: &Programs) -> Result<(), SandboxError> {
        for sub in ["out", "in", "prompts", "bin", "core", "tmp"] {
            mkdir(&self.path.join(sub))?;
        }
        fs_util::write_new(&self.path.join("script"), job.script.as_bytes(), 0o400)?;
        for input in &job.inputs {
            let mut dir = self.path.join("in");
            for part in input.dependency.split('/') {
                dir.push(part);
                if !dir.is_dir() {
                    mkdir(&dir)?;
                }
            }
            fs_util::write_new(&dir.join(&input.file), input.bytes.expose(), 0o400)?;
        }
        for (name, value) in &job.prompts {
            fs_util::write_new(&self.path.join("prompts").join(name), value.expose(), 0o400)?;
        }
        for (dir, links) in [("bin", &programs.bin[..]), ("core", programs.core)] {
            for (name, target) in links {
                let link = self.path.join(dir).join(name);
                symlink(target, &link).at("create symlink", &link)?;
            }
        }
        Ok(())
    }

    /// Remove the dir now, reporting failure (plaintext left behind is worth an error).
    pub(crate) fn remove(self) -> Result<(), SandboxError> {
        let result = remove_tree(&self.path).at("remove work directory", &self.path);
        // Drop unregisters, and retries the removal only if it failed.
        drop(self);
        Ok(result?)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: Drop cannot report. `remove` is the reporting path on success.
        let _ = remove_tree(&self.path);
        live().retain(|r| r.id != self.id);
    }
}

/// `vars-<pid namespace>-<pid>-`, the name prefix of this process's work dirs. It lets a
/// later run recognise work dirs whose process died without cleaning up (SIGKILL, the OOM
/// killer) and remove them: on tmpfs they would otherwise keep plaintext until reboot.
fn owner_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let pid = rustix::process::getpid().as_raw_pid();
        format!("vars-{}-{pid}-", pid_namespace())
    })
}

/// The pid namespace's inode: a pid only identifies a process within its namespace, and a
/// container sharing the runtime dir must not see our live dirs as dead.
fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// Remove work dirs in `root` left by dead vars processes of this pid namespace and user;
/// once per root per process, so a run costs one directory listing at most.
fn sweep_stale(root: &Path) {
    static SWEPT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(PoisonError::into_inner);
        if swept.iter().any(|r| r == root) {
            return;
        }
        swept.push(root.to_path_buf());
    }
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    let ours = format!("vars-{}-", pid_namespace());
    let uid = rustix::process::getuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&ours))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        let dead = rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH);
        let mine = {
            use std::os::unix::fs::MetadataExt;
            fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir() && m.uid() == uid)
        };
        if dead && mine {
            let _ = remove_tree(&entry.path());
        }
    }
}

fn mkdir(path: &Path) -> Result<(), SandboxError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .at("create directory", path)?;
    Ok(())
}

/// `remove_dir_all`, but also when the script left directories without write or search
/// permission (`chmod 000 $out/d`), which would otherwise defeat it for non-root users.
fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            make_dirs_writable(path);
            match fs::remove_dir_all(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        }
        _ => Ok(()),
    }
}

fn make_dirs_writable(dir: &Path) {
    // symlink_metadata: never follow a link the script planted out of the work dir.
    if fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                make_dirs_writable(&entry.path());
            }
        }
    }
}

/// The signals whose default action would end vars without removing its work dirs (and the
/// plaintext in them): Ctrl-C, `kill`, a closed terminal or dropped ssh connection (SIGHUP,
/// review 2 finding 4), Ctrl-\\ (SIGQUIT), and every other signal that terminates by default
/// (review 3 finding 5: a CPU limit's SIGXCPU, a stray SIGUSR1 or SIGALRM…). SIGKILL cannot
/// be caught; the next run sweeps what it leaves. SIGPIPE is ignored by the Rust runtime.
const CLEANUP_SIGNALS: &[std::ffi::c_int] = {
    use signal_hook::consts::*;
    &[
        SIGINT,
        SIGTERM,
        SIGHUP,
        SIGQUIT,
        SIGUSR1,
        SIGUSR2,
        SIGALRM,
        SIGVTALRM,
        SIGPROF,
        SIGXCPU,
        SIGXFSZ,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        SIGIO,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        libc::SIGPWR,
    ]
};

/// Install a handler for the signals in `CLEANUP_SIGNALS` that kills every live run, removes
/// every live work dir and exits with 128 + the signal number (130 for Ctrl-C, 143 for
/// SIGTERM, 129 for SIGHUP, 131 for SIGQUIT). A signal ignored at start (`nohup`) stays
/// ignored. The CLI calls this once at start-up; later calls do nothing.
///
/// Without it a bubblewrap run still dies with vars (`--die-with-parent`), but its work dir
/// and an unsandboxed run's processes (which live in their own process group) would survive.
pub fn install_interrupt_cleanup() -> Result<(), SandboxError> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    // A signal vars was started with ignored stays ignored: `nohup vars generate` must survive
    // the hang-up, and a signal that cannot end vars leaves nothing to clean up.
    let ignored = ignored_at_start();
    let handled = CLEANUP_SIGNALS
        .iter()
        .copied()
        .filter(|&signal| ignored & signal_bit(signal) == 0);
    let mut signals =
        signal_hook::iterator::Signals::new(handled).map_err(SandboxError::Signals)?;
    std::thread::Builder::new()
        .name("vars-interrupt".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Keep the lock until exit so no new work dir can appear meanwhile.
                let mut live = live();
                clean_up(&mut live);
                std::process::exit(128 + signal);
            }
        })
        .map_err(SandboxError::Signals)?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// The mask of signals this process ignores (bit `n - 1` for signal `n`), from `SigIgn:` of
/// `/proc/self/status`; read before any handler is installed, it is what vars inherited.
/// Elsewhere (macOS) none is taken as ignored.
fn ignored_at_start() -> u64 {
    #[cfg(target_os = "linux")]
    {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

fn signal_bit(signal: std::ffi::c_int) -> u64 {
    u32::try_from(signal - 1).map_or(0, |shift| 1u64.checked_shl(shift).unwrap_or(0))
}

/// Kill every live run and remove its work dir.
fn clean_up(live: &mut Vec<LiveRun>) {
    live.retain(|run| {
        if let Some(group) = run.group {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
        // A dying process may still create a file between our readdir and rmdir; once the
        // directory is gone nothing can be created in it, so a few retries settle it.
        for _ in 0..5 {
            if remove_tree(&run.dir).is_ok() {
                break;
            }
        }
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_dir_is_private_and_removed_on_drop() {
        let root = tempfile::tempdir_in("/dev/shm").unwrap();
        let work = WorkDir::create(root.path()).unwrap();
        let mode = fs::metadata(work.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = work.path().to_path_buf();
        fs::create_dir(path.join("locked")).unwrap();
        fs::set_permissions(path.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        drop(work);
        assert!(!path.exists());
        assert!(!live().iter().any(|r| r.dir == path));
    }

    #[test]
    fn stale_dirs_of_dead_processes_are_swept() {
        let root = tempfile::tempdir_in("/dev/shm").unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let ns = pid_namespace();
        let stale = root.path().join(format!("vars-{ns}-{dead}-abc"));
        let other_ns = root.path().join(format!("vars-{}-{dead}-abc", ns + 1));
        let alive = root.path().join(format!("{}keep", owner_prefix()));
        let unrelated = root.path().join("vars-notes");
        for dir in [&stale, &other_ns, &alive, &unrelated] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join("secret"), b"x").unwrap();
        }
        let work = WorkDir::create(root.path()).unwrap();
        assert!(!stale.exists(), "a dead process's work dir is removed");
        for kept in [&other_ns, &alive, &unrelated] {
            assert!(kept.exists(), "{} must be kept", kept.display());
        }
        assert!(
            work.path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(owner_prefix())
        );
    }

    #[test]
    fn root_must_be_ram_backed() {
        assert_eq!(
            runtime_root(Some(Path::new("/dev/shm"))).unwrap(),
            Path::new("/dev/shm")
        );
        let disk = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        if is_ram_backed(disk.path()) {
            return; // a checkout on tmpfs: nothing disk-backed to test with
        }
        match runtime_root(Some(disk.path())) {
            Err(SandboxError::RuntimeDirNotTmpfs { path, .. }) => assert_eq!(path, disk.path()),
            other => panic!("expected RuntimeDirNotTmpfs, got {:?}", other.map(|_| ())),
        }
    }
}
