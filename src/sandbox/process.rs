//! Running the prepared [`Launch`]: its own process group, stdout discarded, the tail of stderr
//! kept, a timeout that kills the whole run, and for bubblewrap a fresh session keyring and
//! exactly the descriptors it is given (`hardening::isolate_child`), plus the network of a
//! `network: true` run attached once the sandbox runs (`usernet`).
//!
//! Waiting is race-free without `unsafe`: a waiter thread blocks in
//! `waitid(…, WEXITED | WNOWAIT)`, which reports the exit but leaves the child a zombie. While
//! it is unreaped its pid, and so its process-group id, cannot be reused, so killing the group
//! on timeout (or to sweep stragglers after a normal exit) can never hit an unrelated process.
//! Only then does `Child::wait` reap it.
//!
//! Under bubblewrap the group kill reaches bwrap itself; everything inside dies with it
//! because bwrap is pid 1 of the sandbox's pid namespace and runs with `--die-with-parent`.
//! Unsandboxed, the group kill reaches the script and all its children, unless they escaped
//! with `setsid` — one reason the unsandboxed mode is only an explicit opt-out.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use super::workdir::WorkDir;
use super::{Job, SandboxError, usernet};

/// How much of a failing script's stderr is kept: the last 16 KiB.
pub const STDERR_CAP: usize = 16 * 1024;

/// How long to wait for stderr's end after the run was reaped. Only an unsandboxed process
/// that escaped the process group can hold the pipe open longer; we then report what we have.
const STDERR_GRACE: Duration = Duration::from_secs(1);

/// How a run ended.
pub(crate) enum Outcome {
    /// The process exited (successfully or not) on its own.
    Exited {
        status: ExitStatus,
        /// Lossy UTF-8 tail of stderr.
        stderr: String,
    },
    /// The timeout expired and the run was killed.
    TimedOut,
}

/// How to start one run.
pub(crate) struct Launch {
    /// The sandbox (or bash) command.
    pub cmd: Command,
    /// Linux sandboxes: start the child in a fresh, empty session keyring, and keep these
    /// descriptors open across its exec (their numbers are on its command line).
    pub isolate: Option<Vec<OwnedFd>>,
    /// `network: true` under bubblewrap: attach user-mode networking once the sandbox runs.
    pub network: Option<usernet::Pending>,
}

impl Launch {
    /// A command with nothing else to do.
    pub(crate) fn plain(cmd: Command) -> Self {
        Launch {
            cmd,
            isolate: None,
            network: None,
        }
    }
}

/// Spawn the launch's command in its own process group, registered with `work` for the
/// interrupt handler, attach its network if it has one, and wait at most `timeout` in all.
pub(crate) fn run(
    launch: Launch,
    job: &Job,
    work: &WorkDir,
    timeout: Duration,
) -> Result<Outcome, SandboxError> {
    let started = Instant::now();
    let Launch {
        mut cmd,
        isolate,
        network,
    } = launch;
    let program = PathBuf::from(cmd.get_program());
    cmd.stdin(Stdio::null())
        // stdout is discarded at the source: generators must never print secrets anywhere
        // vars could show them, and DESIGN §6 says errors never include stdout.
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(keep) = isolate {
        crate::hardening::isolate_child(&mut cmd, keep);
    }
    let spawned = work.spawn_group(&mut cmd);
    // Closes this process's copies of the descriptors the child inherited.
    drop(cmd);
    let mut child = spawned.map_err(|source| SandboxError::Spawn { program, source })?;
    let pid = Pid::from_child(&child);

    let tail = Arc::new(Mutex::new(Tail::default()));
    let stderr_done = spawn_stderr_reader(&mut child, Arc::clone(&tail));

    let (exited_tx, exited_rx) = mpsc::channel();
    let waiter = thread::Builder::new()
        .name("vars-wait".into())
        .spawn(move || {
            let result = loop {
                match rustix::process::waitid(
                    WaitId::Pid(pid),
                    WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                ) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => break other.map(|_| ()),
                }
            };
            let _ = exited_tx.send(result);
        });
    if let Err(source) = waiter {
        // Without a waiter there is no timeout: do not leave the run going unsupervised.
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        let _ = child.wait();
        work.set_group(None);
        return Err(SandboxError::Supervise(source));
    }

    // A network run's helper lives as long as the run, and goes (killed) with it.
    let mut _helper = None;
    if let Some(pending) = network {
        // Checked: a library caller's `Duration::MAX` must not panic here (review 2, finding
        // 5); the model caps timeouts at `MAX_TIMEOUT`, and `validate` refuses more.
        let deadline = started
            .checked_add(timeout)
            .unwrap_or_else(|| started + super::MAX_TIMEOUT);
        match pending.attach(job, work, deadline) {
            Ok(helper) => _helper = helper,
            Err(e) => {
                let _ = rustix::process::kill_process_group(pid, Signal::KILL);
                let _ = exited_rx.recv();
                let _ = child.wait();
                work.set_group(None);
                return Err(e);
            }
        }
    }

    let left = timeout.saturating_sub(started.elapsed());
    let timed_out = match exited_rx.recv_timeout(left) {
        Ok(_) => false,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            // The kill makes the waiter return promptly.
            let _ = exited_rx.recv();
            true
        }
        // The waiter thread died without sending; fall back to a plain wait below.
        Err(mpsc::RecvTimeoutError::Disconnected) => false,
    };
    // Sweep stragglers (background jobs of an unsandboxed script) so that none can keep
    // writing into $out while it is verified; the leader is unreaped, so the group id is safe.
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let status = child.wait();
    work.set_group(None);
    let status = status.map_err(SandboxError::Supervise)?;

    if timed_out {
        return Ok(Outcome::TimedOut);
    }
    let _ = stderr_done.recv_timeout(STDERR_GRACE);
    let stderr = tail.lock().unwrap_or_else(PoisonError::into_inner).render();
    Ok(Outcome::Exited { status, stderr })
}

fn spawn_stderr_reader(child: &mut Child, tail: Arc<Mutex<Tail>>) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel();
    if let Some(mut stderr) = child.stderr.take() {
        let spawned = thread::Builder::new()
            .name("vars-stderr".into())
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    tail.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(&chunk[..n]);
                }
                let _ = done_tx.send(());
            });
        // Without a reader thread the report just has no stderr; the pipe closes with `stderr`.
        drop(spawned);
    }
    done_rx
}

/// The last [`STDERR_CAP`] bytes of a stream, plus how many were dropped before them.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
    dropped: u64,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
        // Trim in batches so a chatty script costs amortised O(1) per byte.
        if self.buf.len() > 2 * STDERR_CAP {
            self.trim();
        }
    }

    fn trim(&mut self) {
        if self.buf.len() > STDERR_CAP {
            let cut = self.buf.len() - STDERR_CAP;
            self.buf.drain(..cut);
            self.dropped += cut as u64;
        }
    }

    fn render(&mut self) -> String {
        self.trim();
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end_matches('\n');
        if self.dropped > 0 {
            format!(
                "[… {} earlier bytes of stderr omitted]\n{text}",
                self.dropped
            )
        } else {
            text.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        for _ in 0..10 {
            t.push(&[b'a'; 5000]);
        }
        t.push(b"END");
        let s = t.render();
        assert!(s.ends_with("END"));
        assert!(
            s.starts_with("[… 33619 earlier bytes of stderr omitted]\n"),
            "{}",
            &s[..60]
        );
        assert!(s.len() <= STDERR_CAP + 64);
    }

    #[test]
    fn short_stderr_is_kept_whole() {
        let mut t = Tail::default();
        t.push("héllo\n".as_bytes());
        assert_eq!(t.render(), "héllo");
    }
}
