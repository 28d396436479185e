//! User-mode networking for `network: true` runs (DESIGN §6, issue 8).
//!
//! A network run keeps bubblewrap's private network namespace (never the host's, whose
//! loopback services and abstract unix sockets would all be reachable); `slirp4netns` then
//! attaches a tap device to it and carries its traffic out through the host's network stack,
//! the way rootless Podman does. With `--disable-host-loopback` the gateway address
//! (`10.0.2.2`) does not lead to the host's `127.0.0.1`; abstract sockets belong to the network
//! namespace, so the host's are out of reach anyway. DNS goes to slirp4netns's forwarder at
//! [`DNS`], which the sandbox's `/etc/resolv.conf` names. slirp4netns confines itself too
//! (`--enable-sandbox`, `--enable-seccomp`): it parses every packet the script sends.
//!
//! The order matters, and three pipes enforce it: bubblewrap reports the sandbox's pid on
//! `--info-fd`; the sandbox's first process, once bubblewrap has finished its own set-up (which
//! includes bringing up the loopback interface, racing slirp4netns's `--configure` otherwise),
//! signals on a second pipe and waits on a third; vars starts slirp4netns, waits for its
//! `--ready-fd`, and only then lets the script start. slirp4netns exits when vars closes its
//! `--exit-fd` (or dies), and is killed once the run is over.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

use super::workdir::WorkDir;
use super::{Job, SandboxError};
use crate::hardening;

/// The address of slirp4netns's DNS forwarder inside the sandbox.
pub(crate) const DNS: &str = "10.0.2.3";

/// The tap device's name inside the sandbox.
const TAP: &str = "tap0";

/// The slirp4netns binary on the host `PATH` (looked up once).
pub(crate) fn program(job: &Job) -> Result<PathBuf, SandboxError> {
    static PROGRAM: OnceLock<Option<PathBuf>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| super::programs::find_program("slirp4netns"))
        .clone()
        .ok_or_else(|| SandboxError::UserNetNotFound {
            generator: job.generator.clone(),
        })
}

/// The pipes of one network run, created before bubblewrap is spawned.
pub(crate) struct Pending {
    program: PathBuf,
    info: io::PipeReader,
    started: io::PipeReader,
    go: io::PipeWriter,
    /// The numbers of the ends bubblewrap inherits: info's and started's write ends, go's
    /// read end.
    numbers: [RawFd; 3],
    /// Those ends, until [`Pending::take_child_ends`] hands them to the command.
    child_ends: Vec<OwnedFd>,
}

impl Pending {
    pub(crate) fn new(program: PathBuf) -> io::Result<Self> {
        let (info, info_w) = io::pipe()?;
        let (started, started_w) = io::pipe()?;
        let (go_r, go) = io::pipe()?;
        let child_ends: Vec<OwnedFd> = vec![info_w.into(), started_w.into(), go_r.into()];
        let numbers = [0, 1, 2].map(|i| child_ends[i].as_raw_fd());
        Ok(Pending {
            program,
            info,
            started,
            go,
            numbers,
            child_ends,
        })
    }

    /// bubblewrap's `--info-fd` number.
    pub(crate) fn info_fd(&self) -> RawFd {
        self.numbers[0]
    }

    /// The shell command that runs first in the sandbox: signal that bubblewrap's set-up is
    /// done, wait for the network, close both pipes, and become the script's bash (still the
    /// sandbox's pid 1). `$0` is bash.
    pub(crate) fn wrapper(&self) -> String {
        let [_, started, go] = self.numbers;
        format!(
            "printf x >&{started} || exit 125; read -r -u {go} _ || exit 125; \
             exec {started}>&- {go}<&-; exec \"$0\" -euo pipefail {}/script",
            super::bwrap::MOUNT
        )
    }

    /// The ends bubblewrap must inherit, for `hardening::isolate_child`. They close in this
    /// process when the command carrying them is dropped, which must happen before
    /// [`Pending::attach`].
    pub(crate) fn take_child_ends(&mut self) -> Vec<OwnedFd> {
        std::mem::take(&mut self.child_ends)
    }

    /// Once bubblewrap runs: attach slirp4netns to the sandbox's network namespace and let
    /// the script start. `Ok(None)`: the sandbox ended before it needed the network, its exit
    /// status says why.
    pub(crate) fn attach(
        mut self,
        job: &Job,
        work: &WorkDir,
        deadline: Instant,
    ) -> Result<Option<Attached>, SandboxError> {
        // Our copies of bubblewrap's ends must be closed, or no pipe would ever see its end.
        self.child_ends.clear();
        let failed = |reason: String| SandboxError::UserNetFailed {
            instance: job.label.clone(),
            generator: job.generator.clone(),
            program: self.program.clone(),
            reason,
        };
        let mut info = Vec::new();
        if !read_until_end(&mut self.info, &mut info, deadline)
            .map_err(|e| failed(e.to_string()))?
        {
            return Err(failed(
                "bubblewrap did not report the sandbox's pid in time".into(),
            ));
        }
        let Some(pid) = child_pid(&info) else {
            // bubblewrap failed before it could start the sandbox.
            return Ok(None);
        };
        let mut byte = [0u8; 1];
        match read_some(&mut self.started, &mut byte, deadline) {
            Ok(Some(1)) => {}
            Ok(Some(_)) => return Ok(None),
            Ok(None) => return Err(failed("the sandbox did not start in time".into())),
            Err(e) => return Err(failed(e.to_string())),
        }

        let log = work.path().join("slirp4netns.log");
        let mut attached =
            Attached::spawn(&self.program, pid, &log).map_err(|e| failed(e.to_string()))?;
        match read_some(&mut attached.ready, &mut byte, deadline) {
            Ok(Some(1)) if byte == *b"1" => {}
            Ok(None) => return Err(failed("it did not get ready in time".into())),
            Ok(Some(_)) => return Err(failed(log_tail(&log))),
            Err(e) => return Err(failed(e.to_string())),
        }
        // The script may start now; if it already died, the run's status says so.
        let _ = self.go.write_all(b"\n");
        Ok(Some(attached))
    }
}

/// A running slirp4netns; killed and reaped when dropped.
pub(crate) struct Attached {
    /// `None` once dropped.
    child: Option<Child>,
    ready: io::PipeReader,
    /// Held open for the run: slirp4netns exits as soon as it closes (also if vars dies).
    _exit: io::PipeWriter,
}

impl Attached {
    fn spawn(program: &Path, pid: u32, log: &Path) -> io::Result<Attached> {
        let (ready, ready_w) = io::pipe()?;
        let (exit_r, exit) = io::pipe()?;
        let (ready_w, exit_r): (OwnedFd, OwnedFd) = (ready_w.into(), exit_r.into());
        let mut cmd = Command::new(program);
        cmd.args([
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
        ])
        .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
        .arg(pid.to_string())
        .arg(TAP)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(log)?);
        hardening::isolate_child(&mut cmd, vec![ready_w, exit_r]);
        let child = cmd.spawn()?;
        drop(cmd);
        Ok(Attached {
            child: Some(child),
            ready,
            _exit: exit,
        })
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        // Reaping waits for the kernel to tear the tap device down (25-30 ms), which the run
        // need not wait for, so a thread reaps it; until then its pid cannot be reused. Without
        // a thread it stays a (killed) zombie until vars exits.
        let _ = std::thread::Builder::new()
            .name("vars-reap".into())
            .spawn(move || {
                let _ = child.wait();
            });
    }
}

/// bubblewrap's `--info-fd` JSON: `{ "child-pid": N, … }`.
fn child_pid(info: &[u8]) -> Option<u32> {
    let value: serde_json::Value = serde_json::from_slice(info).ok()?;
    u32::try_from(value.get("child-pid")?.as_u64()?).ok()
}

/// The last lines slirp4netns wrote, for an error message.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join("; ");
    if tail.is_empty() {
        "it exited without getting ready".into()
    } else {
        tail
    }
}

/// Wait until `fd` is readable or `deadline` passes; false on timeout.
fn wait_readable(fd: impl AsFd, deadline: Instant) -> io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One read of at most `buf.len()` bytes before `deadline`: `None` on timeout.
fn read_some(
    pipe: &mut io::PipeReader,
    buf: &mut [u8],
    deadline: Instant,
) -> io::Result<Option<usize>> {
    if !wait_readable(&*pipe, deadline)? {
        return Ok(None);
    }
    pipe.read(buf).map(Some)
}

/// Read to the end of `pipe` before `deadline`; false on timeout.
fn read_until_end(
    pipe: &mut io::PipeReader,
    out: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<bool> {
    let mut chunk = [0u8; 512];
    loop {
        match read_some(pipe, &mut chunk, deadline)? {
            None => return Ok(false),
            Some(0) => return Ok(true),
            Some(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bubblewraps_info() {
        let info = b"{\n    \"child-pid\": 6850,\n    \"net-namespace\": 4026532180\n}\n";
        assert_eq!(child_pid(info), Some(6850));
        assert_eq!(child_pid(b""), None);
        assert_eq!(child_pid(b"{\"child-pid\": -1}"), None);
    }

    #[test]
    fn reads_time_out() {
        let (mut r, _w) = io::pipe().unwrap();
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(50);
        assert_eq!(read_some(&mut r, &mut [0; 1], deadline).unwrap(), None);
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    }
}
