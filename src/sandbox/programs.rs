//! Which programs a generator may call: its `runtime-inputs` plus a minimal core set (bash and
//! coreutils), resolved on the host and exposed through directories of symlinks that the
//! work dir carries (`bin/` for runtime inputs, `core/` for the core set).
//!
//! Every symlink points at the *canonical* host path, because the sandbox sees only `/usr`,
//! `/nix/store` and a few binds: `/usr/bin/awk → /etc/alternatives/awk → /usr/bin/mawk` or
//! NixOS's `/run/current-system/sw/bin/x → /nix/store/…/bin/x` would dangle inside it otherwise.
//! The shell still invokes a program by its link name, so multi-call binaries (busybox, Nix's
//! single-binary coreutils) keep working. Programs whose canonical path lies outside the
//! system prefixes are listed in [`Programs::host_paths`] so the bwrap backend binds them.
//!
//! Only programs that resolve into [`ALLOWED_PREFIXES`] (the Nix store and the system's own
//! program directories) are exposed (DESIGN §6, issue 8): every path is canonicalised first,
//! so a repository cannot name `runtime-inputs: [/path/to/checkout/tools]` with
//! `tools/bin -> ~/.ssh` and have the home's keys bound into the sandbox, and a name found on
//! `PATH` in the user's home (`~/bin/deploy`, which may embed credentials, or a pyenv shim that
//! would not run without the home anyway) is skipped in favour of the next match on `PATH`;
//! `~/.nix-profile/bin/x` resolves into `/nix/store` and is fine.
//!
//! `PATH` is hygiene, not a wall: a script can still run `/usr/bin/foo` by absolute path.
//! The security boundary is the sandbox (no home, no network, read-only system).

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::{Job, SandboxError};

/// The core set every generator gets besides its runtime inputs: GNU coreutils (or the BSD
/// equivalents on macOS) by name. Names missing on the host are skipped silently. `bash` is
/// added separately because it also runs the script.
const CORE_PROGRAMS: &[&str] = &[
    "[",
    "base32",
    "base64",
    "basename",
    "cat",
    "chmod",
    "cksum",
    "comm",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "echo",
    "env",
    "expand",
    "expr",
    "false",
    "fold",
    "head",
    "id",
    "install",
    "join",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mktemp",
    "mv",
    "nl",
    "nproc",
    "numfmt",
    "od",
    "paste",
    "printenv",
    "printf",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "seq",
    "sha1sum",
    "sha224sum",
    "sha256sum",
    "sha384sum",
    "sha512sum",
    "shuf",
    "sleep",
    "sort",
    "split",
    "stat",
    "tac",
    "tail",
    "tee",
    "test",
    "timeout",
    "touch",
    "tr",
    "true",
    "truncate",
    "tsort",
    "uname",
    "uniq",
    "unexpand",
    "wc",
    "whoami",
    "yes",
];

/// The runtime input that names the running vars binary itself, whatever `PATH` says (`nix run`
/// puts none on it): the shipped zerotier generators call `vars zerotier-identity`.
pub(crate) const VARS_ITSELF: &str = "vars";

/// Host prefixes the bwrap sandbox mounts read-only anyway; anything canonical outside them
/// needs its own bind.
const SYSTEM_PREFIXES: &[&str] = &["/usr", "/nix/store"];

/// Where the canonical path of a runtime input or core program must lie: the Nix store and the
/// directories the system's package manager owns (root's to change). Not `/opt`, `/home`,
/// `/tmp`, `/root`, `/etc` or a checkout.
#[cfg(not(target_os = "macos"))]
pub(crate) const ALLOWED_PREFIXES: &[&str] = &[
    "/nix/store",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
];

/// macOS: the same, plus the prefixes of Homebrew (Apple silicon) and MacPorts, where macOS
/// users' command-line tools live (Intel Homebrew's `/usr/local` is under `/usr`).
#[cfg(target_os = "macos")]
pub(crate) const ALLOWED_PREFIXES: &[&str] = &[
    "/nix/store",
    "/usr",
    "/bin",
    "/sbin",
    "/opt/homebrew",
    "/opt/local",
];

/// The resolved program set of one job.
pub(crate) struct Programs {
    /// Canonical host path of bash, which runs the script.
    pub bash: PathBuf,
    /// `bin/<name>` → canonical target, in `runtime-inputs` order; first name wins.
    pub bin: Vec<(String, PathBuf)>,
    /// `core/<name>` → canonical target.
    pub core: &'static [(String, PathBuf)],
    /// `bin` directories of directory runtime inputs (e.g. `/nix/store/…-openssh/bin`), in
    /// order; they go on `PATH` between `bin/` and `core/`.
    pub path_dirs: Vec<PathBuf>,
    /// Canonical paths outside [`SYSTEM_PREFIXES`] that the sandbox must make visible.
    pub host_paths: Vec<PathBuf>,
}

struct Core {
    bash: PathBuf,
    programs: Vec<(String, PathBuf)>,
}

/// Resolve `job.runtime_inputs` and the core set.
pub(crate) fn resolve(job: &Job) -> Result<Programs, SandboxError> {
    // The host PATH does not change while vars runs, so the core set is resolved once.
    static CORE: OnceLock<Option<Core>> = OnceLock::new();
    let core = CORE
        .get_or_init(|| resolve_core(&host_path(), &allowed()))
        .as_ref()
        .ok_or_else(|| SandboxError::RuntimeInputNotFound {
            generator: job.generator.clone(),
            program: "bash".into(),
        })?;
    resolve_with(job, core, &host_path(), &allowed())
}

fn host_path() -> std::ffi::OsString {
    env::var_os("PATH").unwrap_or_default()
}

fn allowed() -> Vec<PathBuf> {
    ALLOWED_PREFIXES.iter().map(PathBuf::from).collect()
}

/// [`resolve`] with an explicit `PATH` and allowed prefixes (tests use temporary ones).
fn resolve_with(
    job: &Job,
    core: &'static Core,
    path_var: &std::ffi::OsStr,
    allowed: &[PathBuf],
) -> Result<Programs, SandboxError> {
    let mut programs = Programs {
        bash: core.bash.clone(),
        bin: Vec::new(),
        core: &core.programs,
        path_dirs: Vec::new(),
        host_paths: Vec::new(),
    };
    for (_, path) in &core.programs {
        programs.need(path);
    }

    // A name missing from PATH (or found only outside) is an error only if no later input
    // provides it: `[openssl, /nix/store/…-openssl/bin/openssl]` falls back to the store path.
    let mut unmet = Vec::new();
    for input in &job.runtime_inputs {
        let not_found = || SandboxError::RuntimeInputNotFound {
            generator: job.generator.clone(),
            program: input.clone(),
        };
        let outside = |resolved: PathBuf| SandboxError::RuntimeInputOutside {
            generator: job.generator.clone(),
            program: input.clone(),
            resolved,
        };
        let renamed = |link: PathBuf| SandboxError::RuntimeInputRenamed {
            generator: job.generator.clone(),
            program: input.clone(),
            link,
        };
        let path = Path::new(input);
        if path.is_absolute() {
            if !is_plain(path) {
                return Err(SandboxError::RuntimeInputNotPlain {
                    generator: job.generator.clone(),
                    program: input.clone(),
                });
            }
            // Canonical first: every symlink on the way, wherever it points, is resolved
            // before the prefix check.
            let canonical = fs::canonicalize(path).map_err(|_| not_found())?;
            if canonical.is_dir() {
                if !is_allowed(&canonical, allowed) {
                    return Err(outside(canonical));
                }
                // `bin` itself may be a symlink out of an allowed directory.
                let bin = fs::canonicalize(canonical.join("bin")).map_err(|_| not_found())?;
                if !is_allowed(&bin, allowed) {
                    return Err(outside(bin));
                }
                if !bin.is_dir() {
                    return Err(not_found());
                }
                programs.need(&bin);
                programs.path_dirs.push(bin);
                continue;
            }
            // The name the script calls it by is the name it has where the system keeps it.
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| crate::text::escape(n) == *n)
                .ok_or_else(not_found)?;
            match follow(path, name, allowed) {
                Hop::Found(target) if is_executable(&target) => programs.link(name, target),
                Hop::Found(_) | Hop::Broken => return Err(not_found()),
                Hop::Renamed(link) => return Err(renamed(link)),
                Hop::Outside(resolved) => return Err(outside(resolved)),
            }
        } else if input == VARS_ITSELF {
            let exe = env::current_exe().map_err(|_| not_found())?;
            let canonical = fs::canonicalize(exe).map_err(|_| not_found())?;
            programs.link(input, canonical);
        } else if input.contains('/') || input.is_empty() || input == "." || input == ".." {
            return Err(not_found());
        } else {
            match lookup(input, path_var, allowed) {
                Lookup::Found(canonical) => programs.link(input, canonical),
                Lookup::Refused(Refusal::Outside(resolved)) => {
                    unmet.push((input, outside(resolved)))
                }
                Lookup::Refused(Refusal::Renamed(link)) => unmet.push((input, renamed(link))),
                Lookup::Missing => unmet.push((input, not_found())),
            }
        }
    }
    for (name, error) in unmet {
        if !programs.provides(name) {
            return Err(error);
        }
    }
    Ok(programs)
}

impl Programs {
    fn link(&mut self, name: &str, target: PathBuf) {
        if self.bin.iter().any(|(n, _)| n == name) {
            return;
        }
        self.need(&target);
        self.bin.push((name.to_owned(), target));
    }

    /// Whether a `bin/` link or a directory input's `bin/` gives the script `name`.
    fn provides(&self, name: &str) -> bool {
        self.bin.iter().any(|(n, _)| n == name)
            || self.path_dirs.iter().any(|d| is_executable(&d.join(name)))
    }

    fn need(&mut self, path: &Path) {
        let visible = SYSTEM_PREFIXES.iter().any(|p| path.starts_with(p));
        if !visible && !self.host_paths.iter().any(|h| path.starts_with(h)) {
            self.host_paths.push(path.to_path_buf());
        }
    }
}

fn resolve_core(path_var: &std::ffi::OsStr, allowed: &[PathBuf]) -> Option<Core> {
    let canonical = |name: &str| match lookup(name, path_var, allowed) {
        Lookup::Found(path) => Some(path),
        Lookup::Refused(_) | Lookup::Missing => None,
    };
    let bash = canonical("bash")?;
    let programs = std::iter::once(("bash".to_owned(), bash.clone()))
        .chain(
            CORE_PROGRAMS
                .iter()
                .filter_map(|name| Some((name.to_string(), canonical(name)?))),
        )
        .collect();
    Some(Core { bash, programs })
}

/// Look `name` up on the host `PATH` like a shell would: the first executable regular file.
/// For host programs vars itself runs (bubblewrap, slirp4netns), not for the sandbox.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Where a program name given to the sandbox resolves.
#[derive(Debug, PartialEq)]
enum Lookup {
    /// The canonical path of the first match on `PATH` that [`follow`] accepts.
    Found(PathBuf),
    /// Matches exist, but [`follow`] refused each; why it refused the first.
    Refused(Refusal),
    /// No executable of that name on `PATH`.
    Missing,
}

/// Why [`follow`] refused a program path.
#[derive(Debug, PartialEq)]
enum Refusal {
    /// It leads outside the allowed prefixes: the canonical path.
    Outside(PathBuf),
    /// The first hop in an allowed directory has another name: that hop.
    Renamed(PathBuf),
}

/// Like a shell's lookup, but a match that [`follow`] refuses (it leads out of the allowed
/// prefixes, or is a link giving a system program another name) is skipped.
fn lookup(name: &str, path_var: &std::ffi::OsStr, allowed: &[PathBuf]) -> Lookup {
    let mut refused = None;
    for dir in env::split_paths(path_var).filter(|dir| dir.is_absolute()) {
        let candidate = dir.join(name);
        if !is_executable(&candidate) {
            continue;
        }
        match follow(&candidate, name, allowed) {
            Hop::Found(canonical) => return Lookup::Found(canonical),
            Hop::Outside(resolved) => {
                refused.get_or_insert(Refusal::Outside(resolved));
            }
            Hop::Renamed(link) => {
                refused.get_or_insert(Refusal::Renamed(link));
            }
            Hop::Broken => {}
        }
    }
    refused.map_or(Lookup::Missing, Lookup::Refused)
}

/// Where [`follow`] ends.
#[derive(Debug, PartialEq)]
enum Hop {
    /// The first hop in an allowed directory has the requested name; its canonical target
    /// (inside the allowed prefixes too).
    Found(PathBuf),
    /// The first hop in an allowed directory has another name, e.g. `/usr/bin/echo` reached
    /// through a repository's `tools/head`: that hop.
    Renamed(PathBuf),
    /// No hop lies in an allowed directory, or the target does not: the canonical path.
    Outside(PathBuf),
    /// A dangling link, a loop, or no file name.
    Broken,
}

/// Links followed before [`follow`] gives up (Linux's own limit, `MAXSYMLINKS`).
const MAX_HOPS: usize = 40;

/// Follow `path` link by link to the first hop whose directory, canonicalised, lies in an
/// allowed prefix: the system's own name for the program. It must be `name`, the name the
/// script will call it by, because a multi-call binary (busybox, Nix's coreutils) acts by its
/// name, and so does every link into one: a repository's `tools/head -> /usr/bin/echo` would
/// make every `head` of the script an `echo`. NixOS's `/run/current-system/sw/bin/head ->
/// /nix/store/…-system-path/bin/head -> /nix/store/…-coreutils/bin/coreutils` is fine: the
/// first hop's directory is in the store and it is named `head`.
fn follow(path: &Path, name: &str, allowed: &[PathBuf]) -> Hop {
    let mut hop = path.to_path_buf();
    for _ in 0..=MAX_HOPS {
        let (Some(parent), Some(base)) = (hop.parent(), hop.file_name()) else {
            return Hop::Broken;
        };
        let Ok(dir) = fs::canonicalize(parent) else {
            return Hop::Broken;
        };
        let here = dir.join(base);
        if is_allowed(&dir, allowed) {
            if base != name {
                return Hop::Renamed(here);
            }
            return match fs::canonicalize(&here) {
                Ok(target) if is_allowed(&target, allowed) => Hop::Found(target),
                Ok(target) => Hop::Outside(target),
                Err(_) => Hop::Broken,
            };
        }
        match fs::read_link(&here) {
            // A relative target is relative to the link's real directory, as for the kernel.
            Ok(target) => hop = dir.join(target),
            Err(_) => return fs::canonicalize(&here).map_or(Hop::Broken, Hop::Outside),
        }
    }
    Hop::Broken
}

/// An absolute input that is an ordinary path: not through `/proc` (`/proc/self/cwd/…` is the
/// checkout vars runs in, `/proc/self/root/…` anything) or `/dev` (`/dev/fd/N/…`), and without
/// `..`. Installed programs have such paths; only tricks need the others.
fn is_plain(path: &Path) -> bool {
    use std::path::Component;
    let mut normal = path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(Some(n)),
        Component::ParentDir => Some(None),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    });
    let first_ok = match normal.next() {
        Some(Some(first)) => first != "proc" && first != "dev",
        Some(None) => false,
        None => true,
    };
    first_ok && normal.all(|c| c.is_some())
}

/// Whether the canonical `path` lies in (or is) one of the `allowed` prefixes.
fn is_allowed(path: &Path, allowed: &[PathBuf]) -> bool {
    allowed.iter().any(|prefix| path.starts_with(prefix))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
#[path = "tests/programs.rs"]
mod tests;
