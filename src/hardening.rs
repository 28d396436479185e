//! Process-wide hardening of vars itself (issue 8, DESIGN §6 and §9.7), and the only module of
//! the library allowed `unsafe` code.
//!
//! - [`harden_process`], called first thing by the CLI: no core dumps while plaintext is in
//!   memory (`RLIMIT_CORE` 0, inherited by every child, generator scripts included; on Linux also
//!   `PR_SET_DUMPABLE` 0, which further stops processes of the same user from attaching with
//!   ptrace or reading `/proc/<pid>/mem` and `environ`), and every descriptor above 2 that vars
//!   *inherited* from its caller marked close-on-exec, so no child vars spawns (bubblewrap,
//!   sandbox-exec, bash without a sandbox, sops, age plugins, …) receives one. Descriptors vars
//!   opens itself are close-on-exec already (std and rustix open everything `O_CLOEXEC`).
//! - `isolate_child`, used by the sandbox for bubblewrap and its network helper: in the
//!   forked child, before exec, join a fresh anonymous session keyring, so the child starts with
//!   none of the invoking user's keys in its session, and let exactly the given descriptors
//!   (bubblewrap's `--seccomp`, `--info-fd`, …) and 0–2 survive the exec.
//!
//!   It also takes every `VARS_PROMPT_…` variable (a prompt value) out of the environment,
//!   so that no child inherits one either (an age plugin, sops, bubblewrap); the CLI gets them
//!   from [`prompt_environment`].
//!
//! Why `unsafe`: neither std nor rustix has a safe call for these. `close_range`, `fcntl` on a
//! descriptor we do not own and `keyctl` are plain system calls through `libc`, and
//! `CommandExt::pre_exec` is unsafe because its closure runs between fork and exec. Each block
//! below states why it is sound.
#![allow(unsafe_code)]

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd, RawFd};
use std::process::Command;
use std::sync::Mutex;

use crate::secret::SecretBytes;

/// What [`harden_process`] could not do. vars keeps running (the CLI prints a warning): each
/// step is defence in depth, and refusing to start would help no one.
#[derive(Debug, thiserror::Error)]
pub enum HardeningError {
    /// `setrlimit(RLIMIT_CORE, 0)` or `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot disable core dumps of this process: {0}")]
    CoreDumps(#[source] io::Error),
    /// The inherited descriptors could not be listed or marked close-on-exec.
    #[error("cannot mark inherited file descriptors close-on-exec: {0}")]
    Descriptors(#[source] io::Error),
    /// [`harden_process`] ran in a process with more than one thread, so the `VARS_PROMPT_…`
    /// variables stay in the environment (changing it then is not sound), where every child
    /// inherits them.
    #[error(
        "cannot remove the VARS_PROMPT_… variables from the environment: other threads are \
         running; children of vars inherit them"
    )]
    PromptEnvironment,
}

/// Disable core dumps, mark every inherited descriptor above 2 close-on-exec, and move the
/// `VARS_PROMPT_…` variables out of the environment (see [`prompt_environment`]).
///
/// Call it first thing in `main`, while the process has a single thread: the descriptor scan
/// relies on nothing opening or closing descriptors meanwhile, and the environment may only be
/// changed while no other thread reads it (on Linux this is checked; with other threads the
/// variables stay and [`HardeningError::PromptEnvironment`] is returned). Every step is tried;
/// the first failure is returned.
pub fn harden_process() -> Result<(), HardeningError> {
    let core = disable_core_dumps().map_err(HardeningError::CoreDumps);
    let fds = mark_inherited_fds_cloexec().map_err(HardeningError::Descriptors);
    let prompts = take_prompt_variables();
    core.and(fds).and(prompts)
}

/// The `VARS_PROMPT_…` variables [`harden_process`] took out of the environment.
static PROMPT_VARIABLES: Mutex<Vec<(String, SecretBytes)>> = Mutex::new(Vec::new());

/// The `VARS_PROMPT_…` variables (name, value) that [`harden_process`] took out of the
/// environment, handed over once: a second call returns none. Empty when it never ran; a
/// program embedding the library reads its own environment.
pub fn prompt_environment() -> Vec<(String, SecretBytes)> {
    std::mem::take(&mut *PROMPT_VARIABLES.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Review 1, finding 10: a prompt value in vars's environment reached every child vars
/// spawns. Each `VARS_PROMPT_…` variable is moved into [`PROMPT_VARIABLES`] and removed.
fn take_prompt_variables() -> Result<(), HardeningError> {
    let prefix = crate::prompt::ENV_PREFIX.as_bytes();
    let taken: Vec<(OsString, OsString)> = env::vars_os()
        .filter(|(k, _)| k.as_encoded_bytes().starts_with(prefix))
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    let single = single_threaded();
    if single {
        for (name, _) in &taken {
            // SAFETY: changing the environment is unsound only while another thread may read
            // or write it (getenv hands out pointers into it). `single_threaded` checked that
            // this thread is the only one (Linux: the kernel's thread count; elsewhere the
            // documented contract of `harden_process`, which the CLI calls first in `main`),
            // so nothing can read it concurrently.
            unsafe { env::remove_var(name) };
        }
    }
    let mut stash = PROMPT_VARIABLES.lock().unwrap_or_else(|e| e.into_inner());
    // A name that is not UTF-8 names no prompt; it is removed all the same.
    stash.extend(taken.into_iter().filter_map(|(name, value)| {
        Some((
            name.into_string().ok()?,
            SecretBytes::new(value.into_encoded_bytes()),
        ))
    }));
    if single {
        Ok(())
    } else {
        Err(HardeningError::PromptEnvironment)
    }
}

/// Whether this process has one thread: on Linux `Threads:` of `/proc/self/status`; elsewhere
/// taken on trust from the contract of [`harden_process`].
fn single_threaded() -> bool {
    #[cfg(target_os = "linux")]
    {
        fs::read_to_string("/proc/self/status").is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .is_some_and(|n| n.trim() == "1")
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

fn disable_core_dumps() -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    #[cfg(target_os = "linux")]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Where the kernel lists this process's open descriptors.
#[cfg(target_os = "linux")]
const FD_DIR: &str = "/proc/self/fd";
#[cfg(not(target_os = "linux"))]
const FD_DIR: &str = "/dev/fd";

fn mark_inherited_fds_cloexec() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range takes three integers and touches no memory of ours; with
        // CLOSE_RANGE_CLOEXEC it closes nothing, it only sets the flag (Linux >= 5.11).
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        } == 0;
        if done {
            return Ok(());
        }
    }
    mark_listed_fds_cloexec()
}

/// The portable way (older kernels, macOS): list the descriptors, then flag each one.
fn mark_listed_fds_cloexec() -> io::Result<()> {
    // Collect first: the directory's own descriptor is among those listed and is closed once
    // the listing is done, so flagging it afterwards just fails with EBADF.
    let fds: Vec<RawFd> = fs::read_dir(FD_DIR)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl(F_SETFD) on a raw number changes one flag of that descriptor and
        // touches no memory; a number that is not open fails with EBADF, which is fine.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EBADF) {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Make `cmd`'s child join a fresh anonymous session keyring before exec, mark every
/// descriptor above 2 close-on-exec (even if [`harden_process`] never ran, as when the library
/// is used by another program), and keep exactly `keep` open across the exec at the same
/// numbers (the caller passes those numbers on the command line). The parent's copies close
/// when `cmd` is dropped, so drop it right after spawning for pipes to see their end.
///
/// A kernel without keyrings (`ENOSYS`), or a vars already confined so that it may not use
/// them (`EPERM`), has no keys to hide: the child runs anyway.
pub(crate) fn isolate_child(cmd: &mut Command, keep: Vec<OwnedFd>) {
    use std::os::unix::process::CommandExt as _;
    let numbers: Vec<RawFd> = keep.iter().map(|fd| fd.as_raw_fd()).collect();
    // SAFETY: the closure runs in the forked child of a possibly multi-threaded process, so it
    // may only make async-signal-safe calls: it makes three kinds of raw system calls (keyctl,
    // fcntl) and reads a Vec allocated before the fork; it allocates nothing, takes no lock and
    // builds errors only with `last_os_error`, which does not allocate. `keep` is owned by the
    // closure, so every listed descriptor is open until the Command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            let _open_until_spawned = &keep;
            join_fresh_session_keyring()?;
            cloexec_above_stderr_in_child()?;
            for &fd in &numbers {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// In a forked child: mark every descriptor above 2 close-on-exec, with `close_range` or, on
/// kernels before 5.11 and elsewhere, one `fcntl` per possible descriptor number (listing
/// /proc/self/fd would allocate, which a forked child of a threaded process must not).
fn cloexec_above_stderr_in_child() -> io::Result<()> {
    // SAFETY (every block): plain system calls on integers and a stack-allocated rlimit.
    #[cfg(target_os = "linux")]
    {
        let done = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        } == 0;
        if done {
            return Ok(());
        }
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let highest = limit.rlim_cur.min(1 << 16) as RawFd;
    for fd in 3..highest {
        // SAFETY: as above; EBADF for numbers that are not open is expected.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// macOS and others have no kernel keyring (the keychain is a service, which the sandbox
/// profile denies).
#[cfg(not(target_os = "linux"))]
fn join_fresh_session_keyring() -> io::Result<()> {
    Ok(())
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: replace this thread's session keyring with a
/// new, empty, anonymous one. Only called in a forked child (see [`isolate_child`]).
#[cfg(target_os = "linux")]
fn join_fresh_session_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a NULL name asks for an anonymous keyring; the kernel reads no memory of ours.
    let id = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if id >= 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM) => Ok(()),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::io::{FdFlags, fcntl_getfd, fcntl_setfd};

    #[test]
    fn listed_descriptors_become_close_on_exec() {
        let file = fs::File::open("/dev/null").unwrap();
        fcntl_setfd(&file, FdFlags::empty()).unwrap();
        assert!(!fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
        mark_listed_fds_cloexec().unwrap();
        assert!(fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
        // The standard streams are left alone.
        let stdin = std::io::stdin();
        let before = fcntl_getfd(&stdin).unwrap();
        mark_listed_fds_cloexec().unwrap();
        assert_eq!(fcntl_getfd(&stdin).unwrap(), before);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn close_range_marks_descriptors_too() {
        let file = fs::File::open("/dev/null").unwrap();
        fcntl_setfd(&file, FdFlags::empty()).unwrap();
        mark_inherited_fds_cloexec().unwrap();
        assert!(fcntl_getfd(&file).unwrap().contains(FdFlags::CLOEXEC));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn isolated_child_keeps_exactly_the_given_descriptors() {
        let (kept_r, kept_w) = std::io::pipe().unwrap();
        let (other_r, _other_w) = std::io::pipe().unwrap();
        let kept: OwnedFd = kept_w.into();
        let n = kept.as_raw_fd();
        let other = other_r.as_raw_fd();
        let mut cmd = Command::new("/bin/sh");
        cmd.args([
            "-c",
            &format!("echo kept >&{n}; if (: <&{other}) 2>/dev/null; then echo LEAK >&{n}; fi"),
        ]);
        isolate_child(&mut cmd, vec![kept]);
        let status = cmd.status().unwrap();
        drop(cmd);
        assert!(status.success());
        let got = std::io::read_to_string(kept_r).unwrap();
        assert_eq!(got, "kept\n");
    }
}
