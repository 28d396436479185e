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

#[path = "tools.rs"]
mod tools;
pub use tools::require_tool;

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

    /// A repo whose vars.yaml is `text`, with placeholders for clan8 test keys: `{admin}`
    /// (crs58, identity `users/crs58.age`), `{user}` (cameron), `{host}` (cinnabar),
    /// `{host2}` (galena), `{host3}` (electrum).
    pub fn yaml(text: &str) -> Self {
        let mut env = Self::empty();
        env.fleet = "clan8".into();
        std::fs::write(env.root().join("vars.yaml"), with_test_keys(text)).unwrap();
        env
    }

    /// A one-machine fleet (`host1`, admin `alice`) whose only generator `g` runs `script`
    /// and declares `files` (YAML flow mapping), with a 2 s timeout.
    pub fn mini(script: &str, files: &str) -> Self {
        let indented: String = script.lines().map(|l| format!("      {l}\n")).collect();
        Self::yaml(&format!(
            "version: 1\nadmins: [alice]\nusers:\n  alice:\n    recipients: [\"{{admin}}\"]\nmachines:\n  host1:\n    recipients: [\"{{host}}\"]\n    generators: [g]\ngenerators:\n  g:\n    timeout: 2s\n    files: {files}\n    script: |\n{indented}"
        ))
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

/// `text` with the clan8 test keys put in for `{admin}` (crs58), `{user}` (cameron), `{host}`
/// (cinnabar), `{host2}` (galena) and `{host3}` (electrum).
pub fn with_test_keys(text: &str) -> String {
    let key = |rel: &str| {
        std::fs::read_to_string(repo().join("testdata/keys/clan8").join(rel))
            .unwrap()
            .trim()
            .to_owned()
    };
    text.replace("{admin}", &key("users/crs58.pub"))
        .replace("{user}", &key("users/cameron.pub"))
        .replace("{host}", &key("hosts/cinnabar.pub"))
        .replace("{host2}", &key("hosts/galena.pub"))
        .replace("{host3}", &key("hosts/electrum.pub"))
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

/// Every file below `dir` (the lock left out) with its bytes: what a test compares before
/// and after a command that must change nothing, or only some files.
pub fn files_in(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
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

/// A fleet driven through the library, not the binary: declarations written to a temp repo,
/// generation run unsandboxed (plain bash, no bwrap or age program needed), the vault opened
/// with the clan8 test admin. For fast tests of the planner, rekey, check and manifests.
pub struct Lab {
    pub dir: tempfile::TempDir,
    admin: PathBuf,
}

impl Lab {
    /// A repo whose vars.yaml is `yaml` with placeholders for clan8 test keys: `{admin}`
    /// (crs58, an admin), `{user}` (cameron), `{host}` (cinnabar), `{host2}` (galena),
    /// `{host3}` (electrum).
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vars-lab-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("repo")).unwrap();
        let admin = dir.path().join("admin.age");
        std::fs::copy(repo().join("testdata/keys/clan8/users/crs58.age"), &admin).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&admin, std::fs::Permissions::from_mode(0o600)).unwrap();
        let lab = Lab { dir, admin };
        lab.write(yaml);
        lab
    }

    /// Replace vars.yaml (same placeholders as [`Lab::new`]).
    pub fn write(&self, yaml: &str) {
        std::fs::write(self.root().join("vars.yaml"), with_test_keys(yaml)).unwrap();
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// The store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.root().join("vars")
    }

    pub fn config(&self) -> vars::model::Config {
        let mut config =
            vars::model::load(&self.root().join("vars.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let store = self.store(&config);
        config
            .resolve_generated(&store, vars::model::Pinning::Unchecked)
            .unwrap_or_else(|e| panic!("{e}"));
        config
    }

    pub fn store(&self, config: &vars::model::Config) -> vars::store::Store {
        config
            .store()
            .with_state_dir(Some(self.dir.path().join("state")))
    }

    /// The admin's identity file.
    pub fn admin(&self) -> PathBuf {
        self.admin.clone()
    }

    pub fn plan(&self, request: &vars::generate::Request) -> vars::generate::GeneratePlan {
        let config = self.config();
        let store = self.store(&config);
        vars::generate::plan(&config, &store, request, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Plan and apply `request` with `prompts` (`GEN.NAME`, value) and the admin's identity.
    pub fn generate(
        &self,
        request: &vars::generate::Request,
        prompts: &[(&str, &str)],
    ) -> Result<vars::generate::Report, vars::generate::GenerateError> {
        self.generate_as(request, prompts, Some(self.admin()))
    }

    /// As [`Lab::generate`], with `identity` (none: no identity at all).
    pub fn generate_as(
        &self,
        request: &vars::generate::Request,
        prompts: &[(&str, &str)],
        identity: Option<PathBuf>,
    ) -> Result<vars::generate::Report, vars::generate::GenerateError> {
        let mut config = self.config();
        let store = self.store(&config);
        let args: Vec<String> = prompts.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut values =
            vars::prompt::PromptValues::parse(&args, &[], [], &mut || unreachable!()).unwrap();
        values.validate(&config)?;
        let plan = vars::generate::plan(&config, &store, request, &values)?;
        let opts = vars::generate::Options {
            jobs: 2,
            sandbox: vars::sandbox::SandboxKind::Unsandboxed,
            prompts: &values,
            asker: None,
            identity_files: match identity {
                Some(i) => vec![i],
                // A path that does not exist: the default places are not looked at.
                None => vec![self.dir.path().join("no-identity")],
            },
            on_done: None,
        };
        vars::generate::apply(&mut config, &store, plan, &opts)
    }

    /// `vars check`'s findings.
    pub fn check(&self) -> Vec<vars::check::Finding> {
        let config = self.config();
        vars::check::check(&config, &self.store(&config), None).unwrap()
    }

    /// The errors among [`Lab::check`]'s findings, as `kind subject` strings.
    pub fn errors(&self) -> Vec<String> {
        self.check()
            .into_iter()
            .filter(|f| f.severity == vars::check::Severity::Error)
            .map(|f| {
                format!(
                    "{} {}: {}",
                    serde_json::to_value(f.kind).unwrap().as_str().unwrap(),
                    f.subject,
                    f.message
                )
            })
            .collect()
    }

    /// A stored file's bytes.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.store_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// The `generation` id of an instance.
    pub fn generation(&self, instance: &str) -> String {
        let meta: serde_json::Value =
            serde_json::from_slice(&self.read(&format!("{instance}/meta.json"))).unwrap();
        meta["generation"].as_str().unwrap().to_owned()
    }
}

/// A request for `items` (generator names or instance paths), optionally regenerating.
pub fn request(items: &[&str], regenerate: bool) -> vars::generate::Request {
    vars::generate::Request {
        selection: vars::generate::Selection {
            items: items.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
        regenerate,
        trust_vault: None,
    }
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
