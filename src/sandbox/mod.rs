//! Running generator scripts (DESIGN §6). This is the only module that spawns generator
//! processes: the plan says *what* to generate, [`run`] executes one instance's script in a
//! sandbox and hands back its verified outputs as [`SecretBytes`] for the crypto and store
//! modules to encrypt and write.
//!
//! One run:
//!
//! 1. validate the job's names (defence in depth against path traversal) and resolve its
//!    `runtime-inputs` on the host, refusing anything outside the Nix store and the system's
//!    program directories (`programs`);
//! 2. create a private 0700 work dir on tmpfs and fill it with the script, `$in`, `$prompts`
//!    and program links (`workdir`);
//! 3. run `bash -euo pipefail script` under bubblewrap (`bwrap`: a fresh session keyring, the
//!    keyring-denying `seccomp` filter, and for `network: true` user-mode networking in the
//!    sandbox's own network namespace, `usernet`), `sandbox-exec` (`macos`) or, as an
//!    explicit opt-out, directly — with a cleared environment, stdout discarded and a
//!    timeout that kills the whole run (`process`);
//! 4. check that `$out` holds exactly the declared regular files, each within
//!    [`MAX_OUTPUT_BYTES`], and read them (`verify`);
//! 5. remove the work dir — also on error, and on Ctrl-C via [`install_interrupt_cleanup`].
//!
//! The script's environment is the same in every mode: `out`, `in`, `prompts`, the job's own
//! variables (`machine` or `user`), `PATH` (runtime inputs, then a core set of bash and
//! coreutils), `HOME=/homeless-shelter` (nonexistent), `TMPDIR`, `LANG=C.UTF-8`.

mod bwrap;
mod error;
mod macos;
mod process;
mod programs;
#[cfg(target_os = "linux")]
mod seccomp;
mod usernet;
mod verify;
mod workdir;

/// bubblewrap, and so its keyring filter, exists only on Linux.
#[cfg(not(target_os = "linux"))]
mod seccomp {
    pub(crate) fn program() -> Result<&'static [u8], super::SandboxError> {
        Err(super::SandboxError::Seccomp {
            reason: "bubblewrap runs only on Linux".into(),
        })
    }
}

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use error::SandboxError;
pub use macos::sandbox_exec_profile;
pub use process::STDERR_CAP;
pub use workdir::install_interrupt_cleanup;

use crate::secret::SecretBytes;
use crate::spec::SandboxChoice;
use programs::Programs;

/// Largest output file a generator may produce: 16 MiB.
pub const MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// The timeout of a generator that does not set one (DESIGN §2).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest timeout a generator may have: 24 hours. Longer is a mistake (or an attempt to
/// overflow a deadline); the model refuses it with a positioned error, [`run`] as an invalid
/// job.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// The mechanism [`detect`] found, passed to every [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxKind {
    /// Linux: bubblewrap, at this path.
    Bubblewrap(PathBuf),
    /// macOS: `/usr/bin/sandbox-exec` with a deny-by-default profile.
    SandboxExec,
    /// No isolation, only the same work dir layout and cleared environment.
    Unsandboxed,
}

impl SandboxKind {
    /// Whether generator runs are isolated at all (the CLI warns when not).
    pub fn is_sandboxed(&self) -> bool {
        !matches!(self, SandboxKind::Unsandboxed)
    }
}

impl fmt::Display for SandboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxKind::Bubblewrap(path) => write!(f, "bubblewrap ({})", path.display()),
            SandboxKind::SandboxExec => f.write_str("sandbox-exec"),
            SandboxKind::Unsandboxed => f.write_str("no sandbox"),
        }
    }
}

/// Find the sandbox for `setting` (`settings.sandbox`, or `none` for `--no-sandbox`): on Linux `Auto` means bubblewrap (found on `PATH` and
/// checked with a trial run), on macOS `sandbox-exec`; `None` means [`SandboxKind::Unsandboxed`].
pub fn detect(setting: SandboxChoice) -> Result<SandboxKind, SandboxError> {
    match setting {
        SandboxChoice::None => Ok(SandboxKind::Unsandboxed),
        SandboxChoice::Auto => detect_platform(),
    }
}

#[cfg(target_os = "linux")]
fn detect_platform() -> Result<SandboxKind, SandboxError> {
    let bwrap = programs::find_program("bwrap").ok_or(SandboxError::BubblewrapNotFound)?;
    bwrap::probe(&bwrap)?;
    Ok(SandboxKind::Bubblewrap(bwrap))
}

#[cfg(target_os = "macos")]
fn detect_platform() -> Result<SandboxKind, SandboxError> {
    if Path::new(macos::SANDBOX_EXEC).is_file() {
        Ok(SandboxKind::SandboxExec)
    } else {
        Err(SandboxError::SandboxExecNotFound)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn detect_platform() -> Result<SandboxKind, SandboxError> {
    Err(SandboxError::UnsupportedPlatform {
        os: std::env::consts::OS,
    })
}

/// One dependency output, made available to the script as `$in/<dependency>/<file>`.
pub struct InputFile {
    /// The dependency's generator name, or `<generator>/<machine>` for the public files of
    /// one machine's instance in a `machines/*/GEN` dependency.
    pub dependency: String,
    /// The file name within that generator's outputs.
    pub file: String,
    /// The plaintext.
    pub bytes: SecretBytes,
}

/// Everything needed to run one generator instance. Deliberately not `Debug`: it holds
/// plaintext inputs and prompt values.
pub struct Job {
    /// The instance path, e.g. `machines/cinnabar/ssh-host`; used in messages.
    pub label: String,
    /// The generator name; used in messages.
    pub generator: String,
    /// The script, run as `bash -euo pipefail <file>` (from a file in the work dir, never on a
    /// command line where `ps` would show it).
    pub script: String,
    /// Programs for `PATH`: names looked up on the host `PATH`, or absolute paths (a directory
    /// such as a `/nix/store` path contributes its `bin/`; a file is that program).
    pub runtime_inputs: Vec<String>,
    /// Whether the script may use the network.
    pub network: bool,
    /// The run is killed after this long.
    pub timeout: Duration,
    /// Extra environment variables, e.g. `("machine", "cinnabar")` or `("user", "crs58")`.
    pub env: Vec<(String, String)>,
    /// Dependency outputs, written to `$in/<dependency>/<file>`.
    pub inputs: Vec<InputFile>,
    /// Prompt values, written to `$prompts/<name>`.
    pub prompts: Vec<(String, SecretBytes)>,
    /// Exactly the file names the script must create in `$out`.
    pub outputs: Vec<String>,
    /// Where to create the work dir instead of `$VARS_RUNTIME_DIR` / `$XDG_RUNTIME_DIR` /
    /// `/dev/shm`; it must be on tmpfs too. Tests use it to avoid process-global env vars.
    pub work_root: Option<PathBuf>,
}

impl Job {
    /// A job with no inputs, prompts, outputs or runtime inputs, no network and the
    /// [`DEFAULT_TIMEOUT`]; fill in the rest through the public fields.
    pub fn new(
        label: impl Into<String>,
        generator: impl Into<String>,
        script: impl Into<String>,
    ) -> Self {
        Job {
            label: label.into(),
            generator: generator.into(),
            script: script.into(),
            runtime_inputs: Vec::new(),
            network: false,
            timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            inputs: Vec::new(),
            prompts: Vec::new(),
            outputs: Vec::new(),
            work_root: None,
        }
    }
}

/// Run `job` in `kind` and return each declared output's bytes, keyed by file name.
///
/// The work dir is removed before this returns, whatever the outcome.
pub fn run(kind: &SandboxKind, job: &Job) -> Result<BTreeMap<String, SecretBytes>, SandboxError> {
    validate(job)?;
    let programs = programs::resolve(job)?;
    let root = workdir::runtime_root(job.work_root.as_deref())?;
    let work = workdir::WorkDir::create(&root)?;
    let result = run_in(kind, job, &programs, &work);
    // Removal errors matter (plaintext would stay behind), but a run error matters more.
    let removed = work.remove();
    let outputs = result?;
    removed?;
    Ok(outputs)
}

fn run_in(
    kind: &SandboxKind,
    job: &Job,
    programs: &Programs,
    work: &workdir::WorkDir,
) -> Result<BTreeMap<String, SecretBytes>, SandboxError> {
    work.populate(job, programs)?;
    let launch = match kind {
        SandboxKind::Bubblewrap(bwrap_path) => {
            bwrap::prepare(work, job)?;
            bwrap::command(bwrap_path, work, job, programs)?
        }
        SandboxKind::SandboxExec => process::Launch::plain(macos::command(work, job, programs)?),
        SandboxKind::Unsandboxed => {
            process::Launch::plain(unsandboxed_command(work, job, programs))
        }
    };
    match process::run(launch, job, work, job.timeout)? {
        process::Outcome::TimedOut => Err(SandboxError::TimedOut {
            instance: job.label.clone(),
            generator: job.generator.clone(),
            timeout: job.timeout,
        }),
        process::Outcome::Exited { status, stderr } if !status.success() => {
            Err(SandboxError::Exited {
                instance: job.label.clone(),
                generator: job.generator.clone(),
                status,
                stderr,
            })
        }
        process::Outcome::Exited { .. } => verify::collect(&work.out(), job),
    }
}

/// bash directly on the host, with the same layout and a cleared environment.
fn unsandboxed_command(work: &workdir::WorkDir, job: &Job, programs: &Programs) -> Command {
    let tmp = work.path().join("tmp");
    let mut cmd = Command::new(&programs.bash);
    cmd.args(["-euo", "pipefail"])
        .arg(work.path().join("script"))
        .env_clear()
        .envs(script_env(job, programs, work.path(), &tmp))
        .current_dir(&tmp);
    cmd
}

/// Variables the sandbox sets; a job may not override them.
const RESERVED_ENV: &[&str] = &["out", "in", "prompts", "PATH", "HOME", "TMPDIR", "LANG"];

/// The script's whole environment, given where the work dir appears (`mount`) and its
/// temporary directory as the script sees them.
fn script_env(job: &Job, programs: &Programs, mount: &Path, tmp: &Path) -> Vec<(String, OsString)> {
    let path_dirs = std::iter::once(mount.join("bin"))
        .chain(programs.path_dirs.iter().cloned())
        .chain(std::iter::once(mount.join("core")));
    let path = std::env::join_paths(path_dirs)
        // Only a directory input containing ':' can fail; it is then left off PATH.
        .unwrap_or_else(|_| {
            std::env::join_paths([mount.join("bin"), mount.join("core")]).unwrap_or_default()
        });
    let mut env = vec![
        ("out".to_owned(), mount.join("out").into_os_string()),
        ("in".to_owned(), mount.join("in").into_os_string()),
        ("prompts".to_owned(), mount.join("prompts").into_os_string()),
        ("PATH".to_owned(), path),
        ("HOME".to_owned(), workdir::HOMELESS.into()),
        ("TMPDIR".to_owned(), tmp.as_os_str().to_owned()),
        ("LANG".to_owned(), "C.UTF-8".into()),
    ];
    env.extend(job.env.iter().map(|(k, v)| (k.clone(), OsString::from(v))));
    env
}

/// Reject names that could escape their directory, duplicates, and environment variables
/// that would clobber the sandbox's own or break the command line.
fn validate(job: &Job) -> Result<(), SandboxError> {
    let invalid = |problem: String| SandboxError::InvalidJob {
        instance: job.label.clone(),
        generator: job.generator.clone(),
        problem,
    };
    let check = |what: &str, name: &str| {
        if is_safe_name(name) {
            Ok(())
        } else {
            Err(invalid(format!(
                "{what} {name:?} is not a valid name (use letters, digits, '.', '_' and '-', \
                 starting with a letter or digit, without \"..\")"
            )))
        }
    };

    let mut seen = BTreeSet::new();
    for file in &job.outputs {
        check("output file", file)?;
        if !seen.insert(file.as_str()) {
            return Err(invalid(format!("output file {file:?} is declared twice")));
        }
    }
    let mut seen = BTreeSet::new();
    for input in &job.inputs {
        // `gen` or, for `machines/*/gen` dependencies, `gen/<machine>`: each part a name.
        for part in input.dependency.split('/') {
            check("dependency", part)?;
        }
        check("input file", &input.file)?;
        if !seen.insert((input.dependency.as_str(), input.file.as_str())) {
            return Err(invalid(format!(
                "input {}/{} is given twice",
                input.dependency, input.file
            )));
        }
    }
    let mut seen = BTreeSet::new();
    for (name, _) in &job.prompts {
        check("prompt", name)?;
        if !seen.insert(name.as_str()) {
            return Err(invalid(format!("prompt {name:?} is given twice")));
        }
    }
    for (key, value) in &job.env {
        let valid_key = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(invalid(format!(
                "environment variable name {key:?} is not valid"
            )));
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(invalid(format!(
                "environment variable {key:?} is set by the sandbox and cannot be overridden"
            )));
        }
        if value.contains('\0') {
            return Err(invalid(format!(
                "environment variable {key:?} contains a NUL byte"
            )));
        }
    }
    if job.timeout > MAX_TIMEOUT {
        return Err(invalid(format!(
            "its timeout of {:?} is longer than the limit of 24h",
            job.timeout
        )));
    }
    // Defence in depth for the model's rule (review 2, finding 3): what may reach the network
    // gets no secret. A `machines/*/GEN` input (`gen/<machine>`) holds public files only.
    if job.network {
        if let Some((name, _)) = job.prompts.first() {
            return Err(invalid(format!(
                "it has network: true and is given prompt {name:?}; a network generator may \
                 receive no secret input"
            )));
        }
        if let Some(input) = job.inputs.iter().find(|i| !i.dependency.contains('/')) {
            return Err(invalid(format!(
                "it has network: true and is given the outputs of {:?}; a network generator may \
                 depend only on machines/*/GEN (public files)",
                input.dependency
            )));
        }
    }
    if job.script.contains('\0') {
        return Err(invalid("the script contains a NUL byte".into()));
    }
    Ok(())
}

/// `[A-Za-z0-9][A-Za-z0-9._-]*` without `..` (DESIGN §2).
fn is_safe_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..")
}
