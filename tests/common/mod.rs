//! Shared test support: a temporary copy of an example fleet, the `vars` binary run with a
//! clean environment (temp HOME, no VARS_* variables), test keys, and the rule for missing
//! tools (fail with an install hint under CI, skip loudly elsewhere).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `tool` is on PATH. Missing under `CI`: panic with the install hint. Missing
/// elsewhere: print a loud SKIP and return false.
pub fn require_tool(tool: &str, install: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required by this test but is not installed: {install}");
    }
    eprintln!("\n!!! SKIPPING: {tool} is not installed ({install}); CI runs this test\n");
    false
}

/// A temporary copy of a fleet with a private HOME.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    /// Sandbox work dirs go here: a tmpfs (vars refuses disk-backed runtime dirs).
    pub run: tempfile::TempDir,
    pub home: PathBuf,
    pub fleet: String,
}

impl TestEnv {
    /// Copy `testdata/fleets/<name>` into a temp dir.
    pub fn fleet(name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vars-it-")
            .tempdir()
            .unwrap();
        copy_dir(
            &repo().join("testdata/fleets").join(name),
            &dir.path().join("repo"),
        );
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        TestEnv {
            dir,
            home,
            fleet: name.to_owned(),
            run: shm_dir(),
        }
    }

    /// An empty repo dir (for init and bad-input tests).
    pub fn empty() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vars-it-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        TestEnv {
            dir,
            home,
            fleet: String::new(),
            run: shm_dir(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn store(&self) -> PathBuf {
        self.root().join("vars")
    }

    /// A test key of this fleet, copied to a 0600 file (ssh tools refuse 0644 keys).
    pub fn key(&self, rel: &str) -> PathBuf {
        let src = repo().join("testdata/keys").join(&self.fleet).join(rel);
        let dst = self.dir.path().join("keys").join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if !dst.exists() {
            std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        dst
    }

    /// `vars ARGS` in the repo, with a clean environment.
    pub fn vars(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vars"));
        c.args(args).current_dir(self.root()).env_clear();
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("VARS_RUNTIME_DIR", self.runtime_dir())
            .env("LANG", "C.UTF-8");
        if let Some(ci) = std::env::var_os("CI") {
            c.env("CI", ci);
        }
        c.stdin(std::process::Stdio::null());
        c
    }

    /// The private tmpfs runtime dir for sandbox work dirs, checked empty by tests.
    pub fn runtime_dir(&self) -> PathBuf {
        self.run.path().to_path_buf()
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Vec<u8> {
        let out = self.vars(args);
        assert!(
            out.status.success(),
            "vars {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

fn shm_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vars-it-run-")
        .tempdir_in("/dev/shm")
        .expect("/dev/shm is a writable tmpfs")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// Every file below `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            // file_type does not follow symlinks: no loops, no escaping the tree.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Decrypt with the Debian `age` program.
pub fn age_decrypt(file: &Path, identity: &Path) -> Option<Vec<u8>> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

/// Whether the tests run as root (mount namespaces, ramfs, chown). Not root under `CI`:
/// panic with a hint. Not root elsewhere: print a loud SKIP and return false.
pub fn require_root(what: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let hint = "run the tests as root (CI runs as root), e.g. sudo -E cargo test --test it install";
    if std::env::var_os("CI").is_some() {
        panic!("{what} needs root (a private mount namespace, ramfs, chown): {hint}");
    }
    eprintln!("\n!!! SKIPPING: {what} needs root; {hint}\n");
    false
}
