//! [`SandboxError`]: everything that can go wrong between "here is a generator job" and "here
//! are its verified outputs". Each message names the generator (and the instance it ran for)
//! and pairs the problem with the fix. No message ever contains secret content: only names,
//! paths, sizes, exit statuses and the script's own stderr (DESIGN §6 says stderr is reported,
//! stdout never).
//!
//! Everything in a message that came from the repository or a script (names, runtime inputs,
//! stderr) is printed through [`crate::text`], so a terminal escape in it shows as text instead
//! of rewriting the user's terminal (issue 8).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::fs_util::IoError;
use crate::text::{escape as esc, escape_lines};

/// Why a sandboxed generator run could not produce its outputs.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `detect(SandboxChoice::Auto)` on Linux: no `bwrap` program on `PATH`.
    #[error(
        "no sandbox available: bubblewrap (bwrap) was not found on PATH; install bubblewrap: \
         apt-get install bubblewrap / nix profile install nixpkgs#bubblewrap, or opt out with \
         settings.sandbox: none or --no-sandbox"
    )]
    BubblewrapNotFound,

    /// `detect(SandboxChoice::Auto)` on Linux: `bwrap` exists but a trial run failed, usually
    /// because unprivileged user namespaces are disabled on this kernel.
    #[error(
        "bubblewrap ({}) cannot create a sandbox on this machine: {stderr}; allow unprivileged \
         user namespaces (sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04+ an \
         AppArmor profile for bwrap), or opt out with settings.sandbox: none or --no-sandbox",
        esc(&path.to_string_lossy()),
        stderr = escape_lines(stderr)
    )]
    BubblewrapUnusable {
        /// The `bwrap` binary that was tried.
        path: PathBuf,
        /// What it printed to stderr (capped).
        stderr: String,
    },

    /// `detect(SandboxChoice::Auto)` on macOS: `/usr/bin/sandbox-exec` is missing.
    #[error(
        "no sandbox available: /usr/bin/sandbox-exec was not found; it ships with macOS, so \
         check the system installation, or opt out with settings.sandbox: none or --no-sandbox"
    )]
    SandboxExecNotFound,

    /// `detect(SandboxChoice::Auto)` on an operating system without a supported sandbox.
    #[error(
        "no sandbox is supported on {os}; opt out with settings.sandbox: none or --no-sandbox \
         (generators then run unsandboxed)"
    )]
    UnsupportedPlatform {
        /// `std::env::consts::OS`.
        os: &'static str,
    },

    /// The directory chosen for work dirs (`$VARS_RUNTIME_DIR`, `$XDG_RUNTIME_DIR` or
    /// `/dev/shm`) is not a RAM-backed file system, so plaintext would reach a disk.
    #[error(
        "{} (from {origin}) is not a tmpfs or ramfs, so generator plaintext could reach a \
         persistent disk; point {} at a tmpfs directory such as /dev/shm",
        esc(&path.to_string_lossy()),
        crate::env::RUNTIME_DIR
    )]
    RuntimeDirNotTmpfs {
        /// The directory that was checked.
        path: PathBuf,
        /// Where it came from (an environment variable name, "/dev/shm" or "the job").
        origin: &'static str,
    },

    /// The job itself is malformed: a name that is not a safe file name, a duplicate, or an
    /// environment variable that would override one the sandbox sets. The model validates
    /// names before this point; this is the sandbox's own defence against path traversal.
    #[error(
        "generator \"{generator}\" ({instance}) cannot run: {problem}",
        generator = esc(generator), instance = esc(instance)
    )]
    InvalidJob {
        /// Instance path, e.g. `machines/cinnabar/ssh-host`.
        instance: String,
        /// Generator name.
        generator: String,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// A `runtime-inputs` entry names a program that is not on the host `PATH`, or an absolute
    /// path that is neither an executable file nor a directory with a `bin/` subdirectory.
    #[error(
        "runtime input \"{program}\" of generator \"{generator}\" was not found: a name is looked \
         up on PATH, an absolute path must be an executable file or a directory with bin/; \
         install the program or fix runtime-inputs",
        generator = esc(generator), program = esc(program)
    )]
    RuntimeInputNotFound {
        /// Generator name.
        generator: String,
        /// The `runtime-inputs` entry as written.
        program: String,
    },

    /// A `runtime-inputs` entry (or every match of a name on `PATH`) resolves, once every
    /// symlink on the way is followed, outside the Nix store and the system's own program
    /// directories: a repository must not be able to bind a directory of the user's into the
    /// sandbox, e.g. a checkout's `tools/bin -> ~/.ssh` (DESIGN §6, issue 8).
    #[error(
        "runtime input \"{program}\" of generator \"{generator}\" resolves to {}, outside \
         /nix/store and the system's program directories ({}); generators may only use \
         installed programs: install it system-wide or with Nix, or name its /nix/store path",
        esc(&resolved.to_string_lossy()),
        super::programs::ALLOWED_PREFIXES[1..].join(", "),
        generator = esc(generator), program = esc(program)
    )]
    RuntimeInputOutside {
        /// Generator name.
        generator: String,
        /// The `runtime-inputs` entry as written.
        program: String,
        /// Its canonical path (for a directory input possibly its `bin/`). It can be a name
        /// the repository chose, so it is printed escaped.
        resolved: PathBuf,
    },

    /// A `runtime-inputs` entry (or every match of a name on `PATH`) is a link that gives a
    /// system program another name: the first hop of its link chain that lies in a system
    /// directory is named differently from what the script calls, e.g. a committed
    /// `tools/head -> /usr/bin/echo` that would turn every `head` of a shipped script into
    /// `echo` (review 2, finding 1).
    #[error(
        "runtime input \"{program}\" of generator \"{generator}\" leads to {}, a program of \
         another name: a link may not rename a system program (multi-call programs act by \
         the name they are called by); name the program by its own path or by its name on PATH",
        esc(&link.to_string_lossy()),
        generator = esc(generator), program = esc(program)
    )]
    RuntimeInputRenamed {
        /// Generator name.
        generator: String,
        /// The `runtime-inputs` entry as written.
        program: String,
        /// The first hop of its link chain in a system directory, e.g. `/usr/bin/echo`.
        link: PathBuf,
    },

    /// An absolute `runtime-inputs` entry goes through `/proc` or `/dev`
    /// (`/proc/self/cwd/tools/x` is the checkout vars runs in) or has a `..` component.
    #[error(
        "runtime input \"{program}\" of generator \"{generator}\" goes through /proc or /dev, \
         or has a .. component; name an installed program by its own path (/usr/bin/…, \
         /nix/store/…) or by its name on PATH",
        generator = esc(generator), program = esc(program)
    )]
    RuntimeInputNotPlain {
        /// Generator name.
        generator: String,
        /// The `runtime-inputs` entry as written.
        program: String,
    },

    /// The seccomp filter that hides the kernel keyring could not be built (an architecture
    /// vars has no filter for); no generator runs without it.
    #[error(
        "cannot build the sandbox's seccomp filter: {reason}; opt out with --no-sandbox if you \
         trust the generators"
    )]
    Seccomp {
        /// Why.
        reason: String,
    },

    /// A `network: true` generator needs user-mode networking for its own network namespace,
    /// and `slirp4netns` is not on `PATH`.
    #[error(
        "generator \"{generator}\" has network: true, which needs slirp4netns (user-mode \
         networking for the sandbox's own network namespace), and it was not found on PATH; \
         install it: apt-get install slirp4netns / nix profile install nixpkgs#slirp4netns",
        generator = esc(generator)
    )]
    UserNetNotFound {
        /// Generator name.
        generator: String,
    },

    /// slirp4netns could not attach the network to a `network: true` run.
    #[error(
        "generator \"{generator}\" ({instance}): could not set up its network with {}: {}; \
         check that slirp4netns works (slirp4netns --version) or run it without network",
        esc(&program.to_string_lossy()),
        escape_lines(reason),
        generator = esc(generator), instance = esc(instance)
    )]
    UserNetFailed {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
        /// The slirp4netns binary.
        program: PathBuf,
        /// What failed, with the end of slirp4netns's own messages.
        reason: String,
    },

    /// Creating, writing or removing something in the work dir failed.
    #[error(transparent)]
    Io(#[from] IoError),

    /// The sandbox program (or `bash` when unsandboxed) could not be started.
    #[error(
        "cannot start {}: {source}; check that it is installed and executable",
        esc(&program.to_string_lossy())
    )]
    Spawn {
        /// The program that was executed.
        program: PathBuf,
        /// The error from `exec`.
        #[source]
        source: io::Error,
    },

    /// The operating system refused a thread to supervise the run, or waiting for the run's
    /// process failed; the run was killed.
    #[error("cannot supervise the generator process: {0}; the run was stopped, try again")]
    Supervise(#[source] io::Error),

    /// `install_interrupt_cleanup` could not register its SIGINT/SIGTERM/SIGHUP/SIGQUIT handler.
    #[error("cannot install the interrupt handler that removes sandbox work dirs: {0}")]
    Signals(#[source] io::Error),

    /// The script (or the sandbox around it) exited unsuccessfully.
    #[error(
        "generator \"{generator}\" ({instance}) failed with {status}; fix the script or its \
         inputs. Its stderr was:\n{}",
        show_stderr(stderr),
        generator = esc(generator), instance = esc(instance)
    )]
    Exited {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
        /// Exit status of the sandbox process (bubblewrap passes the script's through).
        status: ExitStatus,
        /// The last [`super::STDERR_CAP`] bytes of stderr, lossily decoded. Never stdout.
        stderr: String,
    },

    /// The run exceeded the job's timeout and every process of it was killed.
    #[error(
        "generator \"{generator}\" ({instance}) did not finish within its timeout of {timeout:?} \
         and was killed; raise its timeout (e.g. timeout: 5m) if it really needs longer",
        generator = esc(generator), instance = esc(instance)
    )]
    TimedOut {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
        /// The timeout that expired.
        timeout: Duration,
    },

    /// `$out` itself was removed or replaced (only possible when unsandboxed).
    #[error(
        "generator \"{generator}\" ({instance}) removed or replaced the $out directory; write \
         files into $out instead of replacing it",
        generator = esc(generator), instance = esc(instance)
    )]
    OutDirReplaced {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
    },

    /// A declared output file does not exist in `$out` after a successful run.
    #[error(
        "generator \"{generator}\" ({instance}) did not create declared file \"{file}\" in $out; \
         make the script write \"$out/{file}\" or remove \"{file}\" from the generator's files",
        generator = esc(generator), instance = esc(instance), file = esc(file)
    )]
    MissingOutput {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
        /// The declared file name.
        file: String,
    },

    /// A declared output exists but is a symlink, directory, fifo, socket or device.
    #[error(
        "generator \"{generator}\" ({instance}) created \"$out/{file}\" as a {kind}, not a \
         regular file; write the content into the file itself (no symlinks, directories, \
         fifos or devices)",
        generator = esc(generator), instance = esc(instance), file = esc(file)
    )]
    NotRegularFile {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
        /// The declared file name.
        file: String,
        /// What it is instead ("symlink", "directory", …).
        kind: &'static str,
    },

    /// `$out` contains names that are not declared outputs.
    #[error(
        "generator \"{generator}\" ({instance}) left undeclared files in $out: {}; declare them \
         under files: or delete them in the script (put scratch files in $TMPDIR)",
        list_names(names, *total),
        generator = esc(generator), instance = esc(instance)
    )]
    UndeclaredOutput {
        /// The first few undeclared names, sorted (lossy UTF-8).
        names: Vec<String>,
        /// How many undeclared names there are in total.
        total: usize,
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
    },

    /// A declared output is larger than [`super::MAX_OUTPUT_BYTES`].
    #[error(
        "generator \"{generator}\" ({instance}) wrote {size} bytes to \"$out/{file}\", more than \
         the limit of {limit} bytes; generated files must be small (keys, passwords, \
         certificates): keep bulk data out of vars",
        generator = esc(generator), instance = esc(instance), file = esc(file)
    )]
    OutputTooLarge {
        /// Instance path.
        instance: String,
        /// Generator name.
        generator: String,
        /// The declared file name.
        file: String,
        /// Its size in bytes.
        size: u64,
        /// The limit, [`super::MAX_OUTPUT_BYTES`].
        limit: u64,
    },
}

/// A script's stderr for a message: control characters escaped (`\e]0;…\x07` cannot retitle
/// the terminal), newlines kept.
fn show_stderr(stderr: &str) -> std::borrow::Cow<'_, str> {
    if stderr.trim().is_empty() {
        "(nothing)".into()
    } else {
        escape_lines(stderr)
    }
}

fn list_names(names: &[String], total: usize) -> String {
    let mut s = names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if total > names.len() {
        s.push_str(&format!(" and {} more", total - names.len()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_bwrap_message_has_install_hint_and_opt_out() {
        let msg = SandboxError::BubblewrapNotFound.to_string();
        assert!(msg.contains("apt-get install bubblewrap"), "{msg}");
        assert!(
            msg.contains("nix profile install nixpkgs#bubblewrap"),
            "{msg}"
        );
        assert!(
            msg.contains("settings.sandbox: none or --no-sandbox"),
            "{msg}"
        );
    }

    #[test]
    fn repository_text_in_messages_is_escaped() {
        let e = SandboxError::Exited {
            instance: "machines/m/g\x1b[2K".into(),
            generator: "g\x07".into(),
            status: std::os::unix::process::ExitStatusExt::from_raw(256),
            stderr: "boom\x1b]0;x\x07\nsecond line".into(),
        };
        let msg = e.to_string();
        assert!(!msg.contains('\x1b') && !msg.contains('\x07'), "{msg:?}");
        assert!(msg.contains("boom\\e]0;x\\x07\nsecond line"), "{msg}");
        assert!(
            msg.contains("generator \"g\\x07\" (machines/m/g\\e[2K)"),
            "{msg}"
        );
        let e = SandboxError::RuntimeInputNotFound {
            generator: "g".into(),
            program: "tool\x1b]52;c;AAAA\x07".into(),
        };
        assert!(!e.to_string().contains('\x1b'), "{e}");

        // Review 2, finding 6: paths in sandbox errors can be names the repository chose
        // (reached through a committed link), so every one is escaped too.
        let evil = || PathBuf::from("/tmp/q\x1b]0;PWNED\x07\x1b[2K\rinnocent");
        let (generator, program, instance) = ("g".to_owned(), "x".to_owned(), "i".to_owned());
        let io = || io::Error::other("e");
        for e in [
            SandboxError::RuntimeInputOutside {
                generator: generator.clone(),
                program: program.clone(),
                resolved: evil(),
            },
            SandboxError::RuntimeInputRenamed {
                generator: generator.clone(),
                program: program.clone(),
                link: evil(),
            },
            SandboxError::BubblewrapUnusable {
                path: evil(),
                stderr: String::new(),
            },
            SandboxError::RuntimeDirNotTmpfs {
                path: evil(),
                origin: "the job",
            },
            SandboxError::UserNetFailed {
                instance: instance.clone(),
                generator: generator.clone(),
                program: evil(),
                reason: String::new(),
            },
            SandboxError::Spawn {
                program: evil(),
                source: io(),
            },
        ] {
            let msg = e.to_string();
            assert!(
                !msg.contains('\x1b') && !msg.contains('\x07') && !msg.contains('\r'),
                "{msg:?}"
            );
            assert!(msg.contains("q\\e]0;PWNED\\x07"), "{msg}");
        }
    }

    #[test]
    fn undeclared_list_says_how_many_more() {
        let e = SandboxError::UndeclaredOutput {
            names: vec!["a".into(), "b".into()],
            total: 5,
            instance: "machines/m/g".into(),
            generator: "g".into(),
        };
        let msg = e.to_string();
        assert!(msg.contains("\"a\", \"b\" and 3 more"), "{msg}");
    }
}
