//! The validated model: declarations read from `vars.yaml`, `generators/*.yaml` beside it and
//! the shipped generators, with every name checked, tags expanded, recipients parsed and
//! generator instances resolved into scopes (DESIGN §2).
//!
//! [`load`] is the only way in. It reports every problem at once, each with file, line, column
//! and a hint ([`Diagnostics`]). [`shipped`] holds the generators embedded in the binary and
//! `extends:`. The dependency order between instances lives in [`crate::dag`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;

use crate::dag::{Dag, DagError};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::fs_util::{self, Dir, Kind};
use crate::recipients::ParsedRecipients;
use crate::spec::{self, Backend, NeededFor, PromptKind, SandboxChoice};
use crate::store::Store;
use crate::text;

mod resolve;
pub mod shipped;
mod validate;

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
    /// The instances' dependencies form a cycle.
    #[error(transparent)]
    Cycle(#[from] DagError),
    /// A `{ generated: … }` recipient in the store is not a recipient.
    #[error("machine {machine:?}: {file} should hold its generated recipient: {reason}")]
    Generated {
        /// The machine.
        machine: String,
        /// The file, relative to the store.
        file: String,
        /// What is wrong.
        reason: String,
    },
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
    /// The shipped generator this definition extends (`extends:`), if any.
    pub extends: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// The options its script reads from `validation`, by name.
    pub parameters: BTreeMap<String, ParameterDef>,
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
    /// What the script sees as `$validation`: `validation` as written (`null` when absent),
    /// or, for a generator with `parameters`, a mapping of every parameter's default
    /// overlaid with the values `validation` gives.
    pub validation: serde_json::Value,
    /// `sha256:` of the canonical JSON of `validation` as written (or of `null`): parameter
    /// defaults are not part of it, so a new default in a vars release regenerates nothing.
    pub validation_hash: String,
    /// `sha256:` of what the outputs are made from (script, files, prompts, dependencies,
    /// runtime inputs, share, network): warnings only (DESIGN §5).
    pub definition_hash: String,
    /// The same as vars 0.1 hashed it (with install attributes), still accepted as current.
    pub legacy_definition_hash: String,
}

impl Generator {
    /// Whether a recorded definition hash is this definition's (now or as vars 0.1 hashed it).
    pub fn is_definition(&self, recorded: &str) -> bool {
        recorded == self.definition_hash || recorded == self.legacy_definition_hash
    }

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

/// A declared parameter (`parameters.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterDef {
    /// What it means.
    pub description: String,
    /// Its value when `validation` does not set it.
    pub default: Option<serde_json::Value>,
}

/// A declared output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDef {
    /// Encrypted when true.
    pub secret: bool,
    /// Sent to hosts/users when true; vault only when false.
    pub deploy: bool,
    /// Owner for `vars install`, if declared; else `root`, or in a user instance the user
    /// ([`FileDef::owner_in`]).
    pub owner: Option<String>,
    /// Group for `vars install`, if declared; else `root`, or in a user instance the owner's
    /// primary group ([`FileDef::group_in`]).
    pub group: Option<String>,
    /// Mode for `vars install`.
    pub mode: u32,
    /// Install phase.
    pub needed_for: NeededFor,
}

impl FileDef {
    /// The owner `vars install` gives the file in an instance of `scope` (DESIGN §2).
    pub fn owner_in(&self, scope: &Scope) -> String {
        match (&self.owner, scope) {
            (Some(o), _) => o.clone(),
            (None, Scope::User(u)) => u.clone(),
            (None, _) => "root".to_owned(),
        }
    }

    /// The group, `None` meaning the owner's primary group (resolved at install time).
    pub fn group_in(&self, scope: &Scope) -> Option<String> {
        match (&self.group, scope) {
            (Some(g), _) => Some(g.clone()),
            (None, Scope::User(_)) => None,
            (None, _) => Some("root".to_owned()),
        }
    }
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
    /// Recipient strings as declared (validated), and those of `generated` once
    /// [`Config::resolve_generated`] read them from the store.
    pub recipients: Vec<String>,
    /// `{ generated: GEN/FILE }` recipients: public files of the machine's own instances.
    pub generated: Vec<GeneratedRecipient>,
    /// Tags.
    pub tags: Vec<String>,
    /// Users of this machine.
    pub users: Vec<String>,
    /// Generators assigned directly or through tags, in order, without repeats.
    pub generators: Vec<String>,
}

/// A machine recipient that is a public file of one of its own instances (issue 11: a host
/// key vars generates, so a new host needs one deploy, not two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRecipient {
    /// The generator (assigned to the machine, not shared).
    pub generator: String,
    /// Its public file holding the recipient.
    pub file: String,
    /// The recipient read from the store, once generated.
    pub resolved: Option<String>,
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

impl serde::Serialize for InstanceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
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
    /// `settings.store`: the store directory relative to `root` (plain names only).
    pub store_rel: PathBuf,
    /// `root` joined with `store_rel`, for messages.
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
    /// The dependency graph between instances and its one topological order.
    pub dag: Dag,
    /// Every recipient of every machine and user, parsed once.
    pub recipients: ParsedRecipients,
}

impl Config {
    /// The generator of an instance.
    pub fn generator(&self, id: &InstanceId) -> &Generator {
        self.generators
            .get(&id.generator)
            .expect("instances are only created for known generators")
    }

    /// The store these declarations name, opened beneath `root` without following links.
    pub fn store(&self) -> Store {
        Store::beneath(&self.root, &self.store_rel, self.backend)
    }

    /// Read the `{ generated: GEN/FILE }` recipients of every machine from `store` (never
    /// through a link) and add those that exist to the machine's recipients. One that is not
    /// generated yet is left out: until it exists, that machine's secrets are readable by the
    /// vault (and its other recipients) only.
    pub fn resolve_generated(&mut self, store: &Store) -> Result<(), ConfigError> {
        for (name, machine) in &mut self.machines {
            for g in &mut machine.generated {
                // Read again: the instance may have been (re)generated since.
                if let Some(old) = g.resolved.take() {
                    machine.recipients.retain(|r| *r != old);
                }
                let id = InstanceId {
                    scope: Scope::Machine(name.clone()),
                    generator: g.generator.clone(),
                };
                let rel = store.file_rel(&id, &g.file, false);
                let bytes = match store.read_rel(&rel, 64 * 1024) {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(e) => {
                        return Err(ConfigError::Generated {
                            machine: name.clone(),
                            file: rel,
                            reason: e.to_string(),
                        });
                    }
                };
                let text = String::from_utf8_lossy(&bytes);
                let parsed = crate::crypto::Recipient::parse(text.trim()).map_err(|e| {
                    ConfigError::Generated {
                        machine: name.clone(),
                        file: rel.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let text = parsed.text().to_owned();
                if !machine.recipients.contains(&text) {
                    machine.recipients.push(text.clone());
                }
                g.resolved = Some(text);
                self.recipients.insert(parsed);
            }
        }
        Ok(())
    }

    /// The generated recipients of machine `m` that instance `id` holds itself (it cannot be
    /// encrypted to the key it contains).
    pub fn own_generated_recipients(&self, id: &InstanceId) -> Vec<&str> {
        match &id.scope {
            Scope::Machine(m) => self.machines[m]
                .generated
                .iter()
                .filter(|g| g.generator == id.generator)
                .filter_map(|g| g.resolved.as_deref())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Find `vars.yaml` in `start` or its parents. A `vars.yaml` that is a symbolic link is not
/// taken: the repository is untrusted (DESIGN §3), and a link could make an error message
/// print lines of any file. Name it with `--config` to use it anyway.
pub fn find_config(start: &Path) -> Result<PathBuf, ConfigError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_FILE);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.is_file() => return Ok(candidate),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ConfigError::Io(fs_util::IoError {
                    action: "read",
                    path: candidate,
                    source: std::io::Error::other(
                        "it is a symbolic link, which vars does not follow in a repository (name it with --config FILE to use it)",
                    ),
                }));
            }
            _ => {}
        }
        dir = d.parent();
    }
    Err(ConfigError::NotFound {
        start: start.to_path_buf(),
    })
}

/// Find `vars.yaml` from `start` upwards ([`find_config`]) and load it without following links.
pub fn discover(start: &Path) -> Result<Config, ConfigError> {
    let file = find_config(start)?;
    load_from(&file, false)
}

/// Read and validate `config_file` (a file the person named: a link to it is followed), the
/// `generators/*.yaml` beside it (never through a link) and the shipped generators.
pub fn load(config_file: &Path) -> Result<Config, ConfigError> {
    load_from(config_file, true)
}

/// Largest declaration file read.
const MAX_DECLARATIONS: u64 = 8 * 1024 * 1024;

fn load_from(config_file: &Path, named: bool) -> Result<Config, ConfigError> {
    let root = config_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let root_dir = Dir::open(if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        &root
    })?;
    let text = if named {
        fs_util::read_to_string(config_file)?
    } else {
        let name = config_file.file_name().unwrap_or_default();
        let bytes = root_dir
            .read_capped(Path::new(name), MAX_DECLARATIONS)?
            .ok_or_else(|| ConfigError::NotFound {
                start: root.clone(),
            })?;
        String::from_utf8(bytes).map_err(|_| {
            ConfigError::Io(fs_util::IoError {
                action: "read",
                path: config_file.to_path_buf(),
                source: std::io::Error::other("it is not UTF-8 text"),
            })
        })?
    };
    let mut v = Validator::default();
    let vars: Option<spec::VarsFile> = v.parse(config_file, &text);

    let mut defs: BTreeMap<String, (spec::GeneratorSpec, Origin, PathBuf, String, u64, u64)> =
        BTreeMap::new();
    let gen_dir = root.join("generators");
    let link_refused = |path: &Path, kind: Kind| {
        Diagnostic::at(
            path,
            "",
            0,
            0,
            format!(
                "is a {}, not a regular file: vars does not follow links in a repository",
                kind.describe()
            ),
        )
        .hint("replace it with the file itself, or remove it")
    };
    match root_dir.kind("generators")? {
        None => {}
        Some(Kind::Dir) => {
            let dir = root_dir
                .open_dir("generators")?
                .expect("it was there a moment ago");
            for entry in dir.entries()? {
                let Some(name) = entry.name_str().map(str::to_owned) else {
                    continue;
                };
                let path = gen_dir.join(&name);
                let Some(stem) = name
                    .strip_suffix(".yaml")
                    .or_else(|| name.strip_suffix(".yml"))
                    .map(str::to_owned)
                else {
                    continue;
                };
                if entry.kind != Kind::File {
                    v.push(link_refused(&path, entry.kind));
                    continue;
                }
                let bytes = dir
                    .read_capped(Path::new(&name), MAX_DECLARATIONS)?
                    .unwrap_or_default();
                let Ok(text) = String::from_utf8(bytes) else {
                    v.push(Diagnostic::at(&path, "", 0, 0, "is not UTF-8 text"));
                    continue;
                };
                if let Err(msg) = check_name(&stem) {
                    v.push(
                        Diagnostic::at(
                            &path,
                            "",
                            0,
                            0,
                            format!("generator file name {:?} {msg}", text::escape(&stem)),
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
        Some(kind) => v.push(link_refused(&gen_dir, kind)),
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
    let mut sources = BTreeMap::new();
    let mut broken = BTreeSet::new();
    for (name, (g, origin, path, src, line, col)) in defs {
        let shadows = shipped::find(&name).is_some();
        let g = if g.extends.is_some() {
            match shipped::extend(&mut v, &name, g, &path, &src) {
                Some(g) => g,
                None => {
                    broken.insert(name);
                    continue;
                }
            }
        } else {
            g
        };
        match v.generator(&name, g, origin, shadows, &path, &src, line, col) {
            Some(gdef) => {
                generators.insert(name.clone(), gdef);
            }
            None => {
                broken.insert(name.clone());
            }
        }
        sources.insert(name, src);
    }
    // Shipped generators are parsed lazily: only the ones referenced and not defined locally.
    let mut resolver = Resolver::new(&mut v, config_file, &text, vars, generators, root.clone());
    resolver.broken = broken;
    resolver.sources = sources;
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
    if crate::store::layout::parse_secret_name(name).is_some() {
        return Err("must not end in \".age\" or \".sops\" (vars adds them to encrypted files)");
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
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => return None,
            };
            // Checked: `5124095576030432h` must be "not a duration", not a panic or a wrap.
            total = total.checked_add(n.checked_mul(unit)?)?;
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
        // Overflow is "not a duration" (it panicked in debug builds and wrapped in release).
        assert_eq!(parse_duration("5124095576030432h"), None);
        assert_eq!(parse_duration("18446744073709551615s1s"), None);
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
