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
    let core = CORE.get_or_init(resolve_core).as_ref().ok_or_else(|| {
        SandboxError::RuntimeInputNotFound {
            generator: job.generator.clone(),
            program: "bash".into(),
        }
    })?;

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

    for input in &job.runtime_inputs {
        let not_found = || SandboxError::RuntimeInputNotFound {
            generator: job.generator.clone(),
            program: input.clone(),
        };
        let path = Path::new(input);
        if path.is_absolute() {
            let canonical = fs::canonicalize(path).map_err(|_| not_found())?;
            if canonical.is_dir() {
                let bin = canonical.join("bin");
                if !bin.is_dir() {
                    return Err(not_found());
                }
                programs.need(&bin);
                programs.path_dirs.push(bin);
            } else if is_executable(&canonical) {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(not_found)?;
                programs.link(name, canonical);
            } else {
                return Err(not_found());
            }
        } else if input == VARS_ITSELF {
            let exe = env::current_exe().map_err(|_| not_found())?;
            let canonical = fs::canonicalize(exe).map_err(|_| not_found())?;
            programs.link(input, canonical);
        } else if input.contains('/') || input.is_empty() || input == "." || input == ".." {
            return Err(not_found());
        } else {
            let found = find_program(input).ok_or_else(not_found)?;
            let canonical = fs::canonicalize(&found).map_err(|_| not_found())?;
            programs.link(input, canonical);
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

    fn need(&mut self, path: &Path) {
        let visible = SYSTEM_PREFIXES.iter().any(|p| path.starts_with(p));
        if !visible && !self.host_paths.iter().any(|h| path.starts_with(h)) {
            self.host_paths.push(path.to_path_buf());
        }
    }
}

fn resolve_core() -> Option<Core> {
    let canonical = |name: &str| find_program(name).and_then(|p| fs::canonicalize(p).ok());
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
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
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

    #[test]
    fn vars_is_the_running_binary() {
        let p = resolve(&job(&["vars"])).unwrap();
        let exe = fs::canonicalize(env::current_exe().unwrap()).unwrap();
        assert_eq!(p.bin, vec![("vars".to_owned(), exe.clone())]);
        assert!(p.host_paths.iter().any(|h| exe.starts_with(h)) || exe.starts_with("/usr"));
    }

    #[test]
    fn directory_inputs_contribute_their_bin_dir() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        let p = resolve(&job(&[dir.path().to_str().unwrap()])).unwrap();
        let bin = fs::canonicalize(dir.path()).unwrap().join("bin");
        assert_eq!(p.path_dirs, vec![bin.clone()]);
        assert!(
            p.host_paths.contains(&bin),
            "outside /usr, so it must be bound"
        );

        let empty = tempfile::tempdir().unwrap();
        assert!(resolve(&job(&[empty.path().to_str().unwrap()])).is_err());
    }
}
