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
mod tests {
    use super::*;

    fn job(inputs: &[&str]) -> Job {
        let mut job = Job::new("machines/m/g", "g", "true");
        job.runtime_inputs = inputs.iter().map(|s| s.to_string()).collect();
        job
    }

    #[test]
    fn core_set_has_bash_and_coreutils() {
        let p = resolve(&job(&[])).unwrap();
        assert!(p.bash.ends_with("bash"), "{}", p.bash.display());
        let names: Vec<&str> = p.core.iter().map(|(n, _)| n.as_str()).collect();
        for n in ["bash", "cat", "truncate", "sleep", "ln", "head"] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(!names.contains(&"ssh-keygen"));
        assert!(p.bin.is_empty());
    }

    #[test]
    fn names_resolve_to_canonical_paths() {
        let p = resolve(&job(&["bash", "bash"])).unwrap();
        assert_eq!(p.bin.len(), 1, "duplicates collapse");
        assert_eq!(p.bin[0].1, fs::canonicalize(&p.bin[0].1).unwrap());
    }

    #[test]
    fn unknown_and_relative_inputs_are_not_found() {
        for bad in [
            "no-such-program-vars-test",
            "./bash",
            "",
            "..",
            "/no/such/path",
        ] {
            match resolve(&job(&[bad])) {
                Err(SandboxError::RuntimeInputNotFound { program, generator }) => {
                    assert_eq!(program, bad);
                    assert_eq!(generator, "g");
                }
                Err(other) => panic!("{bad}: wrong error {other}"),
                Ok(_) => panic!("{bad}: resolved"),
            }
        }
    }

    fn exe(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn vars_is_the_running_binary() {
        let p = resolve(&job(&["vars"])).unwrap();
        let exe = fs::canonicalize(env::current_exe().unwrap()).unwrap();
        assert_eq!(p.bin, vec![("vars".to_owned(), exe.clone())]);
        assert!(p.host_paths.iter().any(|h| exe.starts_with(h)) || exe.starts_with("/usr"));
    }

    /// A core set for `resolve_with`, leaked: tests need a `&'static` one.
    fn core() -> &'static Core {
        Box::leak(Box::new(resolve_core(&host_path(), &allowed()).unwrap()))
    }

    fn outside_error(result: Result<Programs, SandboxError>, input: &str) -> PathBuf {
        match result {
            Err(SandboxError::RuntimeInputOutside {
                program,
                generator,
                resolved,
            }) => {
                assert_eq!(program, input);
                assert_eq!(generator, "g");
                resolved
            }
            Err(other) => panic!("{input}: wrong error {other}"),
            Ok(_) => panic!("{input}: resolved"),
        }
    }

    #[test]
    fn system_directory_inputs_contribute_their_bin_dir() {
        let p = resolve(&job(&["/usr", "/usr/bin/env"])).unwrap();
        assert_eq!(p.path_dirs, vec![PathBuf::from("/usr/bin")]);
        assert!(p.host_paths.is_empty(), "/usr is mounted anyway");
        assert_eq!(p.bin[0].0, "env");

        let store = tempfile::tempdir().unwrap();
        let pkg = store.path().join("pkg");
        fs::create_dir_all(pkg.join("bin")).unwrap();
        let allowed = vec![fs::canonicalize(store.path()).unwrap()];
        let input = pkg.to_str().unwrap();
        let p = resolve_with(&job(&[input]), core(), &host_path(), &allowed).unwrap();
        let bin = fs::canonicalize(&pkg).unwrap().join("bin");
        assert_eq!(p.path_dirs, vec![bin.clone()]);
        assert!(p.host_paths.contains(&bin), "outside /usr, so it is bound");

        fs::create_dir(store.path().join("empty")).unwrap();
        let empty = store.path().join("empty");
        let result = resolve_with(
            &job(&[empty.to_str().unwrap()]),
            core(),
            &host_path(),
            &allowed,
        );
        assert!(matches!(
            result,
            Err(SandboxError::RuntimeInputNotFound { .. })
        ));
    }

    /// Issue 8: `tools/bin -> ~/.ssh` in the repo plus `runtime-inputs: [/path/to/checkout/tools]`.
    #[test]
    fn a_checkout_directory_with_bin_linked_to_the_home_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let ssh = root.path().join("home/.ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::write(ssh.join("id_ed25519"), "PRIVATE KEY").unwrap();
        let tools = root.path().join("checkout/tools");
        fs::create_dir_all(&tools).unwrap();
        std::os::unix::fs::symlink(&ssh, tools.join("bin")).unwrap();
        let input = tools.to_str().unwrap();
        let resolved = outside_error(resolve(&job(&[input])), input);
        assert_eq!(resolved, fs::canonicalize(&tools).unwrap());
        let msg = resolve(&job(&[input])).err().unwrap().to_string();
        assert!(msg.contains(input), "{msg}");
        assert!(msg.contains("/nix/store"), "{msg}");

        // Also when the directory itself is in an allowed prefix: its `bin` leads out.
        let allowed = vec![fs::canonicalize(root.path().join("checkout")).unwrap()];
        let resolved = outside_error(
            resolve_with(&job(&[input]), core(), &host_path(), &allowed),
            input,
        );
        assert_eq!(resolved, fs::canonicalize(&ssh).unwrap());

        // A file input linked out of an allowed place, and a plain file in the checkout.
        std::os::unix::fs::symlink(ssh.join("id_ed25519"), tools.join("key")).unwrap();
        let key = tools.join("key");
        outside_error(
            resolve_with(
                &job(&[key.to_str().unwrap()]),
                core(),
                &host_path(),
                &allowed,
            ),
            key.to_str().unwrap(),
        );
        for input in ["/etc/passwd", "/tmp", "/root"] {
            if Path::new(input).exists() {
                outside_error(resolve(&job(&[input])), input);
            }
        }
    }

    #[test]
    fn path_lookup_skips_matches_outside_the_allowed_prefixes() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let (home, sys) = (root_path.join("home/bin"), root_path.join("sys/bin"));
        exe(&home.join("tool"));
        exe(&sys.join("tool"));
        exe(&home.join("only-home"));
        // A system-looking link that leads into the home is outside too.
        std::os::unix::fs::symlink(home.join("only-home"), sys.join("linked")).unwrap();
        let allowed = vec![root_path.join("sys")];
        let path = env::join_paths([&home, &sys]).unwrap();
        assert_eq!(
            lookup("tool", &path, &allowed),
            Lookup::Found(sys.join("tool"))
        );
        assert_eq!(
            lookup("only-home", &path, &allowed),
            Lookup::Refused(Refusal::Outside(home.join("only-home")))
        );
        assert_eq!(
            lookup("linked", &path, &allowed),
            Lookup::Refused(Refusal::Outside(home.join("only-home")))
        );
        assert_eq!(lookup("missing", &path, &allowed), Lookup::Missing);
        let result = resolve_with(&job(&["only-home"]), core(), &path, &allowed);
        assert_eq!(outside_error(result, "only-home"), home.join("only-home"));
    }

    fn renamed_error(result: Result<Programs, SandboxError>, input: &str) -> PathBuf {
        match result {
            Err(SandboxError::RuntimeInputRenamed {
                program,
                generator,
                link,
            }) => {
                assert_eq!(program, input);
                assert_eq!(generator, "g");
                link
            }
            Err(other) => panic!("{input}: wrong error {other}"),
            Ok(p) => panic!("{input}: resolved to {:?}", p.bin),
        }
    }

    /// Review 2, finding 1: a committed `tools/head -> /usr/bin/echo` named as a runtime input
    /// (by the checkout's path, or found first on `PATH`) would make every `head` of a shipped
    /// script an `echo`, and `random-password` constant.
    #[test]
    fn a_link_that_renames_a_system_program_is_refused_or_skipped() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let sys = root_path.join("sys/bin");
        exe(&sys.join("echo"));
        exe(&sys.join("head"));
        let tools = root_path.join("checkout/tools");
        fs::create_dir_all(&tools).unwrap();
        std::os::unix::fs::symlink(sys.join("echo"), tools.join("head")).unwrap();
        // A relative chain through a second repository link ends at the same place.
        std::os::unix::fs::symlink("../../sys/bin/echo", tools.join("hop")).unwrap();
        std::os::unix::fs::symlink("hop", tools.join("tail")).unwrap();
        let allowed = vec![root_path.join("sys")];

        let head = tools.join("head");
        let input = head.to_str().unwrap();
        let result = resolve_with(&job(&[input]), core(), &host_path(), &allowed);
        assert_eq!(renamed_error(result, input), sys.join("echo"));
        let tail = tools.join("tail");
        let input = tail.to_str().unwrap();
        let result = resolve_with(&job(&[input]), core(), &host_path(), &allowed);
        assert_eq!(renamed_error(result, input), sys.join("echo"));

        // On PATH, the renaming link is skipped for the next real `head`...
        let path = env::join_paths([&tools, &sys]).unwrap();
        assert_eq!(
            lookup("head", &path, &allowed),
            Lookup::Found(sys.join("head"))
        );
        let p = resolve_with(&job(&["head"]), core(), &path, &allowed).unwrap();
        assert_eq!(p.bin, vec![("head".to_owned(), sys.join("head"))]);
        // ...and when there is none, the error says why.
        let only = env::join_paths([&tools]).unwrap();
        let result = resolve_with(&job(&["head"]), core(), &only, &allowed);
        assert_eq!(renamed_error(result, "head"), sys.join("echo"));

        // The same attack against the real system: echo is never `head`.
        if let Ok(echo) = fs::canonicalize("/usr/bin/echo") {
            std::os::unix::fs::symlink(&echo, tools.join("cat")).unwrap();
            let cat = tools.join("cat");
            let input = cat.to_str().unwrap();
            renamed_error(resolve(&job(&[input])), input);
        }
    }

    /// The NixOS layout keeps working: `/run/current-system/sw/bin/head ->
    /// /nix/store/…-system-path/bin/head -> /nix/store/…-coreutils/bin/coreutils`, exposed
    /// as `head` so that the multi-call binary acts as `head`.
    #[test]
    fn a_link_chain_into_a_multi_call_binary_keeps_its_system_name() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let store = root_path.join("nix/store");
        let coreutils = store.join("aaa-coreutils/bin/coreutils");
        exe(&coreutils);
        let system_path = store.join("bbb-system-path/bin");
        fs::create_dir_all(&system_path).unwrap();
        std::os::unix::fs::symlink(&coreutils, system_path.join("head")).unwrap();
        std::os::unix::fs::symlink("coreutils", coreutils.with_file_name("tail")).unwrap();
        let run = root_path.join("run/current-system");
        fs::create_dir_all(&run).unwrap();
        std::os::unix::fs::symlink(store.join("bbb-system-path"), run.join("sw")).unwrap();
        let allowed = vec![store.clone()];

        let sw = run.join("sw/bin/head");
        let p = resolve_with(
            &job(&[sw.to_str().unwrap()]),
            core(),
            &host_path(),
            &allowed,
        )
        .unwrap();
        assert_eq!(p.bin, vec![("head".to_owned(), coreutils.clone())]);
        let path =
            env::join_paths([run.join("sw/bin"), coreutils.parent().unwrap().into()]).unwrap();
        assert_eq!(
            lookup("head", &path, &allowed),
            Lookup::Found(coreutils.clone())
        );
        assert_eq!(lookup("tail", &path, &allowed), Lookup::Found(coreutils));
    }

    /// `/proc/self/cwd/…` is the checkout vars runs in, `/proc/self/root/…` and `/dev/fd/…`
    /// reach anything; `..` hides where a path goes. None names an installed program.
    #[test]
    fn proc_dev_and_dotdot_inputs_are_refused() {
        for bad in [
            "/proc/self/cwd/tools/head",
            "/proc/self/root/usr/bin/head",
            "/dev/fd/3/head",
            "/usr/bin/../bin/head",
            "/usr/../proc/self/exe",
        ] {
            match resolve(&job(&[bad])) {
                Err(SandboxError::RuntimeInputNotPlain { program, generator }) => {
                    assert_eq!(program, bad);
                    assert_eq!(generator, "g");
                }
                Err(other) => panic!("{bad}: wrong error {other}"),
                Ok(_) => panic!("{bad}: resolved"),
            }
        }
        assert!(resolve(&job(&["/usr/bin/env"])).is_ok());
    }

    /// A name missing from `PATH` is fine when a later input provides it: an extending
    /// definition appends a store path for a program the shipped one names.
    #[test]
    fn a_later_input_can_provide_a_name_missing_from_path() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let tool = root_path.join("store/pkg/bin/vars-test-tool");
        exe(&tool);
        let allowed = vec![root_path.join("store")];
        let empty = std::ffi::OsString::new();
        let input = tool.to_str().unwrap();
        let p = resolve_with(&job(&["vars-test-tool", input]), core(), &empty, &allowed).unwrap();
        assert_eq!(p.bin, vec![("vars-test-tool".to_owned(), tool)]);
        let result = resolve_with(&job(&["vars-test-tool"]), core(), &empty, &allowed);
        assert!(matches!(
            result,
            Err(SandboxError::RuntimeInputNotFound { .. })
        ));
    }

    /// Review 2, finding 6 (poc2): a committed `tools/x` linked to a file whose name carries
    /// terminal escapes; the "outside" error printed its canonical path raw.
    #[test]
    fn the_outside_error_escapes_the_path_it_names() {
        let root = tempfile::tempdir().unwrap();
        let tools = root.path().join("tools");
        let evil = tools.join("q\x1b]0;PWNED-TITLE\x07\x1b[2K\rinnocent");
        exe(&evil);
        std::os::unix::fs::symlink(evil.file_name().unwrap(), tools.join("x")).unwrap();
        let x = tools.join("x");
        let err = resolve(&job(&[x.to_str().unwrap()])).err().unwrap();
        assert!(
            matches!(err, SandboxError::RuntimeInputOutside { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            !msg.contains('\x1b') && !msg.contains('\x07') && !msg.contains('\r'),
            "{msg:?}"
        );
        assert!(msg.contains("q\\e]0;PWNED-TITLE\\x07"), "{msg}");
    }
}
