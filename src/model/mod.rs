//! The validated model: declarations read from `vars.yaml`, `generators/*.yaml` beside it and
//! the shipped generators, with every name checked, tags expanded, recipients parsed and
//! generator instances resolved into scopes (DESIGN §2).
//!
//! [`load`] is the only way in. It reports every problem at once, each with file, line, column
//! and a hint ([`Diagnostics`]). The dependency order between instances lives in [`crate::dag`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::spec::{self, Backend, NeededFor, PromptKind, SandboxChoice};
use crate::{fs_util, shipped};

mod allow;
mod resolve;
mod validate;

pub use allow::{AllowRule, ScanConfig, is_fingerprint, load_scan_file};

use resolve::Resolver;
use validate::Validator;

/// The file vars looks for.
pub const CONFIG_FILE: &str = "vars.yaml";

/// Errors from finding and reading the declarations.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `vars.yaml` in the directory or any parent.
    #[error("no {CONFIG_FILE} found in {} or any parent directory", start.display())]
    NotFound {
        /// Where the search started.
        start: PathBuf,
    },
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] fs_util::IoError),
    /// The declarations are invalid.
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// Where a generator definition came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Inline under `generators:` in vars.yaml.
    Inline,
    /// `generators/<name>.yaml` beside vars.yaml.
    Local(PathBuf),
    /// Shipped with vars (embedded in the binary).
    Shipped,
}

/// A validated generator definition.
#[derive(Debug, Clone)]
pub struct Generator {
    /// Its name.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// Declared files, by name.
    pub files: BTreeMap<String, FileDef>,
    /// Prompts, by name.
    pub prompts: BTreeMap<String, PromptDef>,
    /// Dependencies as declared.
    pub dependencies: Vec<DepRef>,
    /// Line and column of each entry of `dependencies` in its file (0 when unknown).
    pub dependency_positions: Vec<(u64, u64)>,
    /// Programs put on PATH.
    pub runtime_inputs: Vec<String>,
    /// The bash script.
    pub script: String,
    /// `share: true`.
    pub share: bool,
    /// `network: true`.
    pub network: bool,
    /// Run time limit.
    pub timeout: Duration,
    /// Where the definition came from.
    pub origin: Origin,
    /// A local definition hides a shipped generator of the same name.
    pub shadows_shipped: bool,
    /// `validation` as canonical JSON (`null` when absent). Scripts see it as `$validation`;
    /// shipped generators read their parameters from it.
    pub validation: serde_json::Value,
    /// `sha256:` of the canonical JSON of `validation` (or of `null`).
    pub validation_hash: String,
    /// `sha256:` of the definition (script, files, prompts, …): warnings only (DESIGN §5).
    pub definition_hash: String,
}

impl Generator {
    /// Files the script must write: declared files minus persisted prompts (vars writes those).
    pub fn script_outputs(&self) -> Vec<String> {
        self.files
            .keys()
            .filter(|f| !self.prompts.get(*f).is_some_and(|p| p.persist))
            .cloned()
            .collect()
    }

    /// The script's view of `validation` (issue 14: shipped generators take their parameters
    /// from it): `validation` holds the canonical JSON, and each top-level entry of a mapping
    /// whose value is a string, number or boolean is also `validation_<key>` (with `-` and `.`
    /// in the key turned into `_`), so `${validation_length:-32}` works in bash. Keys that do
    /// not make a valid variable name are left to `$validation`.
    pub fn validation_env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if self.validation.is_null() {
            return env;
        }
        env.push(("validation".to_owned(), self.validation.to_string()));
        if let serde_json::Value::Object(map) = &self.validation {
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                let name: String = key
                    .chars()
                    .map(|c| if matches!(c, '-' | '.') { '_' } else { c })
                    .collect();
                if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.is_empty()
                    && !value.contains('\0')
                {
                    env.push((format!("validation_{name}"), value));
                }
            }
        }
        env
    }
}

/// A declared output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDef {
    /// Encrypted when true.
    pub secret: bool,
    /// Sent to hosts/users when true; vault only when false.
    pub deploy: bool,
    /// Owner for `vars install`.
    pub owner: String,
    /// Group for `vars install`.
    pub group: String,
    /// Mode for `vars install`.
    pub mode: u32,
    /// Install phase.
    pub needed_for: NeededFor,
}

/// A declared prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptDef {
    /// Shown when asking.
    pub description: Option<String>,
    /// How it is entered.
    pub kind: PromptKind,
    /// Stored as a secret file of the same name.
    pub persist: bool,
}

/// One entry of `dependencies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepRef {
    /// `GEN`: the same scope's instance, else the shared one.
    Same(String),
    /// `machines/*/GEN`: the public files of every machine's instance of GEN.
    EveryMachine(String),
}

impl DepRef {
    /// The generator depended on.
    pub fn generator(&self) -> &str {
        match self {
            DepRef::Same(g) | DepRef::EveryMachine(g) => g,
        }
    }
}

/// A person.
#[derive(Debug, Clone)]
pub struct User {
    /// Recipient strings as declared (validated).
    pub recipients: Vec<String>,
    /// Per-user generators.
    pub generators: Vec<String>,
}

/// A host.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Recipient strings as declared (validated).
    pub recipients: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Users of this machine.
    pub users: Vec<String>,
    /// Generators assigned directly or through tags, in order, without repeats.
    pub generators: Vec<String>,
}

/// The scope an instance lives in (DESIGN §2).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `shared/<gdef>/`.
    Shared,
    /// `machines/<m>/<gdef>/`.
    Machine(String),
    /// `users/<u>/<gdef>/`.
    User(String),
}

/// A generator instance: a generator in a scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId {
    /// Scope.
    pub scope: Scope,
    /// Generator name.
    pub generator: String,
}

impl InstanceId {
    /// The instance's directory relative to the store, e.g. `machines/cinnabar/ssh-host`.
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from(self.to_string())
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Shared => write!(f, "shared/{}", self.generator),
            Scope::Machine(m) => write!(f, "machines/{m}/{}", self.generator),
            Scope::User(u) => write!(f, "users/{u}/{}", self.generator),
        }
    }
}

/// A resolved dependency edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependency {
    /// All files of one instance, at `$in/<gdef>/<file>`.
    One(InstanceId),
    /// Public files of each machine's instance, at `$in/<gdef>/<machine>/<file>`.
    EveryMachine {
        /// The generator.
        generator: String,
        /// The instances, one per machine that has the generator.
        instances: Vec<InstanceId>,
    },
}

/// A generator instance and who consumes it.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Identity.
    pub id: InstanceId,
    /// Resolved dependencies, in declaration order.
    pub dependencies: Vec<Dependency>,
    /// For shared instances: machines using it (directly, or through a dependent instance).
    pub machines: BTreeSet<String>,
    /// For shared instances: users using it.
    pub users: BTreeSet<String>,
    /// Not assigned anywhere; exists because something depends on it.
    pub implicit: bool,
}

impl Instance {
    /// Every instance this one depends on.
    pub fn dependency_ids(&self) -> impl Iterator<Item = &InstanceId> {
        self.dependencies.iter().flat_map(|d| match d {
            Dependency::One(id) => std::slice::from_ref(id),
            Dependency::EveryMachine { instances, .. } => instances.as_slice(),
        })
    }
}

/// The validated declarations of a fleet.
#[derive(Debug)]
pub struct Config {
    /// The directory holding vars.yaml.
    pub root: PathBuf,
    /// vars.yaml itself.
    pub config_file: PathBuf,
    /// The store directory (absolute or relative to the working directory, as root is).
    pub store_dir: PathBuf,
    /// `settings.backend`.
    pub backend: Backend,
    /// `settings.armor`.
    pub armor: bool,
    /// `settings.sandbox`.
    pub sandbox: SandboxChoice,
    /// Admin user names.
    pub admins: Vec<String>,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Machines by name.
    pub machines: BTreeMap<String, Machine>,
    /// Generator definitions in use (assigned or depended on) and all declared ones.
    pub generators: BTreeMap<String, Generator>,
    /// Every instance, by id.
    pub instances: BTreeMap<InstanceId, Instance>,
    /// `scan:`: what `vars scan` is told to accept.
    pub scan: ScanConfig,
}

impl Config {
    /// The generator of an instance.
    pub fn generator(&self, id: &InstanceId) -> &Generator {
        self.generators
            .get(&id.generator)
            .expect("instances are only created for known generators")
    }
}

/// Find `vars.yaml` in `start` or its parents.
pub fn find_config(start: &Path) -> Result<PathBuf, ConfigError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ConfigError::NotFound {
        start: start.to_path_buf(),
    })
}

/// Read and validate `config_file`, the `generators/*.yaml` beside it, and the shipped
/// generators.
pub fn load(config_file: &Path) -> Result<Config, ConfigError> {
    let root = config_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let text = fs_util::read_to_string(config_file)?;
    let mut v = Validator::default();
    let vars: Option<spec::VarsFile> = v.parse(config_file, &text);

    let mut defs: BTreeMap<String, (spec::GeneratorSpec, Origin, PathBuf, String, u64, u64)> =
        BTreeMap::new();
    let gen_dir = root.join("generators");
    if gen_dir.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&gen_dir)
            .map_err(|source| fs_util::IoError {
                action: "list",
                path: gen_dir.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        entries.sort();
        for path in entries {
            let text = fs_util::read_to_string(&path)?;
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            if let Err(msg) = check_name(&stem) {
                v.push(
                    Diagnostic::at(
                        &path,
                        "",
                        0,
                        0,
                        format!("generator file name {stem:?} {msg}"),
                    )
                    .hint("rename the file to <generator-name>.yaml"),
                );
                continue;
            }
            if let Some(g) = v.parse::<spec::GeneratorSpec>(&path, &text) {
                defs.insert(stem, (g, Origin::Local(path.clone()), path, text, 0, 0));
            }
        }
    }
    let Some(mut vars) = vars else {
        return Err(ConfigError::Invalid(Diagnostics(v.diags)));
    };
    for (name, g) in std::mem::take(&mut vars.generators) {
        if let Some((_, _, path, ..)) = defs.get(&name.value.0) {
            v.push(
                Diagnostic::at(
                    config_file,
                    &text,
                    name.line,
                    name.column,
                    format!("generator {:?} is defined twice", name.value.0),
                )
                .hint(format!("remove it here or delete {}", path.display())),
            );
            continue;
        }
        defs.insert(
            name.value.0.clone(),
            (
                g,
                Origin::Inline,
                config_file.to_path_buf(),
                text.clone(),
                name.line,
                name.column,
            ),
        );
    }
    let mut generators = BTreeMap::new();
    let mut broken = BTreeSet::new();
    for (name, (g, origin, path, src, line, col)) in defs {
        let shadows = shipped::find(&name).is_some();
        match v.generator(&name, g, origin, shadows, &path, &src, line, col) {
            Some(gdef) => {
                generators.insert(name, gdef);
            }
            None => {
                broken.insert(name);
            }
        }
    }
    // Shipped generators are parsed lazily: only the ones referenced and not defined locally.
    let mut resolver = Resolver::new(&mut v, config_file, &text, vars, generators, root.clone());
    resolver.broken = broken;
    resolver.finish()
}

/// Check a name against DESIGN §2: `[A-Za-z0-9][A-Za-z0-9._-]*`, no `..`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("is empty"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err("must start with a letter or digit");
        }
        _ => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err("may contain only letters, digits, '.', '_' and '-'");
    }
    if name.contains("..") {
        return Err("must not contain \"..\"");
    }
    Ok(())
}

/// Check a file name: a valid name that is not `meta.json` and does not end in `.age`.
pub fn check_file_name(name: &str) -> Result<(), &'static str> {
    check_name(name)?;
    if name.ends_with(".age") {
        return Err("must not end in \".age\" (vars adds it to encrypted files)");
    }
    if name == "meta.json" || name == "manifest.json" {
        return Err("is reserved for vars' own bookkeeping");
    }
    Ok(())
}

/// Parse `90s`, `5m`, `1h`, `1h30m` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            num.push(c);
        } else {
            let n: u64 = num.parse().ok()?;
            num.clear();
            total += n * match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
        }
    }
    (num.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

/// `sha256:<hex>` of canonical JSON (serde_json maps are sorted).
pub fn hash_json(value: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(value).expect("JSON values serialize");
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "cinnabar", "ssh-host_ed25519.v2", "0x"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", ".hidden", "a..b", "-x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_file_name("x.age").is_err());
        assert!(check_file_name("meta.json").is_err());
        assert!(check_file_name("key.pub").is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5x"), None);
    }
}
