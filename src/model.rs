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

use crate::crypto::Recipient;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::spec::{self, Backend, Loc, Name, NeededFor, PromptKind, SandboxChoice};
use crate::{fs_util, shipped};

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

#[derive(Default)]
struct Validator {
    diags: Vec<Diagnostic>,
}

impl Validator {
    fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, path: &Path, text: &str) -> Option<T> {
        // Tight budget: a declaration file is small; alias bombs and huge inputs are errors.
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_events: 200_000,
                max_aliases: 1_000,
                max_anchors: 1_000,
                max_nodes: 100_000,
                max_depth: 64,
                max_total_scalar_bytes: 8 * 1024 * 1024,
                max_documents: 1,
            },
            alias_limits: serde_saphyr::alias_limits! {
                max_total_replayed_events: 10_000,
                max_alias_expansions_per_anchor: 100,
            },
            with_snippet: false,
        };
        match serde_saphyr::from_str_with_options::<T>(text, options) {
            Ok(v) => Some(v),
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((0, 0));
                let message = yaml_message(&e);
                let hint = yaml_hint(&message, path);
                let mut d = Diagnostic::at(path, text, line, column, message);
                if let Some(h) = hint {
                    d = d.hint(h);
                }
                self.push(d);
                None
            }
        }
    }

    fn name(&mut self, file: &Path, src: &str, what: &str, n: &Loc<Name>) -> bool {
        match check_name(&n.value.0) {
            Ok(()) => true,
            Err(msg) => {
                self.push(
                    Diagnostic::at(file, src, n.line, n.column, format!("{what} name {:?} {msg}", n.value.0))
                        .hint("names are letters, digits, '.', '_' and '-', starting with a letter or digit"),
                );
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn generator(
        &mut self,
        name: &str,
        g: spec::GeneratorSpec,
        origin: Origin,
        shadows_shipped: bool,
        file: &Path,
        src: &str,
        line: u64,
        column: u64,
    ) -> Option<Generator> {
        let before = self.diags.len();
        if let Err(msg) = check_name(name) {
            self.push(
                Diagnostic::at(
                    file,
                    src,
                    line,
                    column,
                    format!("generator name {name:?} {msg}"),
                )
                .hint(
                    "names are letters, digits, '.', '_' and '-', starting with a letter or digit",
                ),
            );
        }
        let mut files = BTreeMap::new();
        for (fname, f) in &g.files {
            if let Err(msg) = check_file_name(&fname.value.0) {
                self.push(
                    Diagnostic::at(
                        file,
                        src,
                        fname.line,
                        fname.column,
                        format!("file name {:?} of generator {name:?} {msg}", fname.value.0),
                    )
                    .hint("rename the file"),
                );
                continue;
            }
            let mode = match &f.mode {
                None => 0o400,
                Some(m) => match u32::from_str_radix(m.value.trim_start_matches("0o"), 8) {
                    Ok(mode) if mode <= 0o7777 => mode,
                    _ => {
                        self.push(
                            Diagnostic::at(
                                file,
                                src,
                                m.line,
                                m.column,
                                format!(
                                    "mode {:?} of file {:?} is not an octal mode",
                                    m.value, fname.value.0
                                ),
                            )
                            .hint("write it as a quoted octal string, e.g. mode: \"0440\""),
                        );
                        0o400
                    }
                },
            };
            files.insert(
                fname.value.0.clone(),
                FileDef {
                    secret: f.secret.unwrap_or(true),
                    deploy: f.deploy.unwrap_or(true),
                    owner: f.owner.clone().unwrap_or_else(|| "root".into()),
                    group: f.group.clone().unwrap_or_else(|| "root".into()),
                    mode,
                    needed_for: f.needed_for.unwrap_or(NeededFor::Services),
                },
            );
        }
        let mut prompts = BTreeMap::new();
        for (pname, p) in &g.prompts {
            if let Err(msg) = check_file_name(&pname.value.0) {
                self.push(Diagnostic::at(
                    file,
                    src,
                    pname.line,
                    pname.column,
                    format!(
                        "prompt name {:?} of generator {name:?} {msg}",
                        pname.value.0
                    ),
                ));
                continue;
            }
            let def = PromptDef {
                description: p.description.clone(),
                kind: p.kind.unwrap_or(PromptKind::Line),
                persist: p.persist,
            };
            if def.persist && !files.contains_key(&pname.value.0) {
                // A persisted prompt is stored as a secret file of the same name (DESIGN §2).
                files.insert(
                    pname.value.0.clone(),
                    FileDef {
                        secret: true,
                        deploy: true,
                        owner: "root".into(),
                        group: "root".into(),
                        mode: 0o400,
                        needed_for: NeededFor::Services,
                    },
                );
            }
            prompts.insert(pname.value.0.clone(), def);
        }
        if files.is_empty() && self.diags.len() == before {
            self.push(
                Diagnostic::at(
                    file,
                    src,
                    g.script.line,
                    g.script.column,
                    format!("generator {name:?} declares no files"),
                )
                .hint("list what the script writes to $out under files:, e.g. files: { key: {} }"),
            );
        }
        let mut dependencies = Vec::new();
        let mut dependency_positions = Vec::new();
        for d in &g.dependencies {
            let dep = match d.value.strip_prefix("machines/*/") {
                Some(gdef) => DepRef::EveryMachine(gdef.to_owned()),
                None => DepRef::Same(d.value.clone()),
            };
            if let Err(msg) = check_name(dep.generator()) {
                self.push(
                    Diagnostic::at(file, src, d.line, d.column, format!("dependency {:?} of generator {name:?} {msg}", d.value))
                        .hint("write a generator name, or machines/*/<generator> for every machine's public files"),
                );
                continue;
            }
            if dependencies
                .iter()
                .any(|x: &DepRef| x.generator() == dep.generator())
            {
                self.push(
                    Diagnostic::at(
                        file,
                        src,
                        d.line,
                        d.column,
                        format!("generator {name:?} depends on {:?} twice", dep.generator()),
                    )
                    .hint("both forms would write $in/<generator>/; keep one"),
                );
                continue;
            }
            if dep.generator() == name {
                self.push(Diagnostic::at(
                    file,
                    src,
                    d.line,
                    d.column,
                    format!("generator {name:?} depends on itself"),
                ));
                continue;
            }
            dependencies.push(dep);
            dependency_positions.push((d.line, d.column));
        }
        let timeout = match &g.timeout {
            None => Duration::from_secs(60),
            Some(t) => parse_duration(&t.value).unwrap_or_else(|| {
                self.push(
                    Diagnostic::at(
                        file,
                        src,
                        t.line,
                        t.column,
                        format!("timeout {:?} is not a duration", t.value),
                    )
                    .hint("write e.g. 90s, 5m or 1h"),
                );
                Duration::from_secs(60)
            }),
        };
        if self.diags.len() != before {
            return None;
        }
        let validation = g.validation.clone().unwrap_or(serde_json::Value::Null);
        let definition = serde_json::json!({
            "script": g.script.value,
            "files": files.iter().map(|(k, f)| (k.clone(), serde_json::json!({
                "secret": f.secret, "deploy": f.deploy, "owner": f.owner, "group": f.group,
                "mode": f.mode, "needed-for": f.needed_for,
            }))).collect::<serde_json::Map<_, _>>(),
            "prompts": prompts.keys().collect::<Vec<_>>(),
            "dependencies": g.dependencies.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "runtime-inputs": g.runtime_inputs.iter().map(|d| d.value.clone()).collect::<Vec<_>>(),
            "share": g.share,
            "network": g.network,
        });
        Some(Generator {
            name: name.to_owned(),
            description: g.description,
            files,
            prompts,
            dependencies,
            dependency_positions,
            runtime_inputs: g.runtime_inputs.into_iter().map(|r| r.value).collect(),
            script: g.script.value,
            share: g.share,
            network: g.network,
            timeout,
            origin,
            shadows_shipped,
            validation_hash: hash_json(&validation),
            definition_hash: hash_json(&definition),
        })
    }
}

/// serde-saphyr's message without its own location suffix (we print file:line:col ourselves).
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    };
    // serde-saphyr's advice about its own options is not for vars users.
    let msg = msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    msg.trim().to_owned()
}

fn yaml_hint(message: &str, path: &Path) -> Option<String> {
    let schema = if path.file_name().is_some_and(|f| f == CONFIG_FILE) {
        "schema/vars.schema.json"
    } else {
        "schema/generator.schema.json"
    };
    if message.contains("unknown field") {
        Some(format!(
            "check the spelling; the allowed keys are listed in {schema} (vars schema)"
        ))
    } else if message.to_lowercase().contains("duplicate") {
        Some("each key may appear once in a mapping; remove or merge the repeated one".into())
    } else if message.to_lowercase().contains("budget") || message.to_lowercase().contains("alias")
    {
        Some("declarations must be small, plain YAML; expand anchors and aliases by hand".into())
    } else if message.contains("missing field") {
        Some(format!("add the field; see {schema}"))
    } else if message.starts_with("expected")
        || message.contains("while parsing")
        || message.contains("did not find")
    {
        Some("this is not valid YAML here: check indentation, quotes and closing brackets".into())
    } else {
        None
    }
}

struct Resolver<'a> {
    v: &'a mut Validator,
    file: &'a Path,
    src: &'a str,
    root: PathBuf,
    vars: spec::VarsFile,
    generators: BTreeMap<String, Generator>,
    /// Defined, but with errors already reported: referring to them adds no noise.
    broken: BTreeSet<String>,
    instances: BTreeMap<InstanceId, Instance>,
}

impl<'a> Resolver<'a> {
    fn new(
        v: &'a mut Validator,
        file: &'a Path,
        src: &'a str,
        vars: spec::VarsFile,
        generators: BTreeMap<String, Generator>,
        root: PathBuf,
    ) -> Self {
        Resolver {
            v,
            file,
            src,
            root,
            vars,
            generators,
            broken: BTreeSet::new(),
            instances: BTreeMap::new(),
        }
    }

    fn diag(&mut self, line: u64, column: u64, msg: String, hint: impl Into<String>) {
        self.v
            .push(Diagnostic::at(self.file, self.src, line, column, msg).hint(hint));
    }

    /// Make sure a generator is known (loading a shipped one on demand).
    fn known(&mut self, name: &str) -> bool {
        if self.generators.contains_key(name) {
            return true;
        }
        let Some(text) = shipped::find(name) else {
            return false;
        };
        let path = PathBuf::from(format!("<shipped>/generators/{name}.yaml"));
        let before = self.v.diags.len();
        if let Some(g) = self.v.parse::<spec::GeneratorSpec>(&path, text)
            && let Some(gdef) = self
                .v
                .generator(name, g, Origin::Shipped, false, &path, text, 0, 0)
        {
            self.generators.insert(name.to_owned(), gdef);
            return true;
        }
        self.v.diags.len() == before
    }

    fn recipients(
        &mut self,
        who: &str,
        list: &[Loc<String>],
        line: u64,
        column: u64,
        hint: &str,
    ) -> Vec<String> {
        if list.is_empty() {
            self.diag(
                line,
                column,
                format!("{who} has no recipients"),
                hint.to_owned(),
            );
        }
        let mut out = Vec::new();
        for r in list {
            match Recipient::parse(&r.value) {
                Ok(p) => out.push(p.text().to_owned()),
                Err(e) => self.diag(r.line, r.column, format!("recipient of {who} is malformed: {e}"), "use the output of age-keygen -y, or an ssh public key line (ssh-keyscan HOST / cat ~/.ssh/id_ed25519.pub)"),
            }
        }
        out
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        let vars = std::mem::replace(
            &mut self.vars,
            spec::VarsFile {
                version: Loc::unplaced(0),
                settings: Default::default(),
                admins: vec![],
                users: Default::default(),
                machines: Default::default(),
                tags: Default::default(),
                generators: Default::default(),
            },
        );
        if vars.version.value != spec::FORMAT_VERSION {
            self.diag(
                vars.version.line,
                vars.version.column,
                format!("unsupported version {}", vars.version.value),
                format!("this vars reads version: {}", spec::FORMAT_VERSION),
            );
        }
        let store_rel = vars
            .settings
            .store
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_else(|| "vars".into());
        if let Some(s) = &vars.settings.store
            && (s.value.is_empty()
                || Path::new(&s.value).is_absolute()
                || s.value.split('/').any(|c| c == ".."))
        {
            self.diag(
                s.line,
                s.column,
                format!(
                    "store {:?} must be a relative path inside the repository",
                    s.value
                ),
                "e.g. store: vars",
            );
        }
        // Tags.
        let mut tags: BTreeMap<String, Vec<Loc<Name>>> = BTreeMap::new();
        for (name, t) in &vars.tags {
            if self.v.name(self.file, self.src, "tag", name) {
                tags.insert(name.value.0.clone(), t.generators.clone());
            }
        }
        // Users.
        let mut users = BTreeMap::new();
        for (name, u) in &vars.users {
            if !self.v.name(self.file, self.src, "user", name) {
                continue;
            }
            let recipients = self.recipients(
                &format!("user {:?}", name.value.0),
                &u.recipients,
                name.line,
                name.column,
                "add the user's age recipient (vars keygen prints one) or ssh public key under recipients:",
            );
            let mut gens = Vec::new();
            for g in &u.generators {
                if self.assignable(g) {
                    gens.push(g.value.0.clone());
                }
            }
            users.insert(
                name.value.0.clone(),
                User {
                    recipients,
                    generators: gens,
                },
            );
        }
        let mut admins = Vec::new();
        for a in &vars.admins {
            if !users.contains_key(&a.value.0) {
                self.diag(
                    a.line,
                    a.column,
                    format!("admin {:?} is not a declared user", a.value.0),
                    "declare it under users: with its recipients",
                );
            } else {
                admins.push(a.value.0.clone());
            }
        }
        if vars.admins.is_empty() {
            self.diag(
                1,
                1,
                "no admin is declared".into(),
                "add admins: [<user>] so someone can read every secret through the vault key",
            );
        }
        // Machines.
        let mut machines = BTreeMap::new();
        for (name, m) in &vars.machines {
            if !self.v.name(self.file, self.src, "machine", name) {
                continue;
            }
            let recipients = self.recipients(
                &format!("machine {:?}", name.value.0),
                &m.recipients,
                name.line,
                name.column,
                &format!(
                    "add its host key: ssh-keyscan -t ed25519 {} | cut -d' ' -f2-",
                    name.value.0
                ),
            );
            let mut gens: Vec<String> = Vec::new();
            let mut add = |g: String| {
                if !gens.contains(&g) {
                    gens.push(g);
                }
            };
            for g in &m.generators {
                if self.assignable(g) {
                    add(g.value.0.clone());
                }
            }
            for t in &m.tags {
                match tags.get(&t.value.0) {
                    None => self.diag(
                        t.line,
                        t.column,
                        format!("machine {:?} has unknown tag {:?}", name.value.0, t.value.0),
                        "declare it under tags:",
                    ),
                    Some(tg) => {
                        for g in tg.clone() {
                            if self.assignable(&g) {
                                add(g.value.0.clone());
                            }
                        }
                    }
                }
            }
            for u in &m.users {
                if !users.contains_key(&u.value.0) {
                    self.diag(
                        u.line,
                        u.column,
                        format!(
                            "machine {:?} lists unknown user {:?}",
                            name.value.0, u.value.0
                        ),
                        "declare the user under users: with recipients",
                    );
                }
            }
            machines.insert(
                name.value.0.clone(),
                Machine {
                    recipients,
                    tags: m.tags.iter().map(|t| t.value.0.clone()).collect(),
                    users: m.users.iter().map(|u| u.value.0.clone()).collect(),
                    generators: gens,
                },
            );
        }
        if !self.v.diags.is_empty() {
            return Err(ConfigError::Invalid(Diagnostics(std::mem::take(
                &mut self.v.diags,
            ))));
        }
        // Instances: assigned ones first, then dependencies (possibly implicit) to a fixpoint.
        for (m, machine) in &machines {
            for g in &machine.generators {
                let gdef = &self.generators[g];
                let id = if gdef.share {
                    InstanceId {
                        scope: Scope::Shared,
                        generator: g.clone(),
                    }
                } else {
                    InstanceId {
                        scope: Scope::Machine(m.clone()),
                        generator: g.clone(),
                    }
                };
                let inst = self
                    .instances
                    .entry(id.clone())
                    .or_insert_with(|| new_instance(id, false));
                inst.implicit = false;
                inst.machines.insert(m.clone());
            }
        }
        for (u, user) in &users {
            for g in &user.generators {
                let gdef = &self.generators[g];
                let id = if gdef.share {
                    InstanceId {
                        scope: Scope::Shared,
                        generator: g.clone(),
                    }
                } else {
                    InstanceId {
                        scope: Scope::User(u.clone()),
                        generator: g.clone(),
                    }
                };
                let inst = self
                    .instances
                    .entry(id.clone())
                    .or_insert_with(|| new_instance(id, false));
                inst.implicit = false;
                inst.users.insert(u.clone());
            }
        }
        let mut queue: Vec<InstanceId> = self.instances.keys().cloned().collect();
        let mut resolved = BTreeSet::new();
        while let Some(id) = queue.pop() {
            if !resolved.insert(id.clone()) {
                continue;
            }
            let gdef = self.generators[&id.generator].clone();
            let mut deps = Vec::new();
            for d in &gdef.dependencies {
                if !self.known(d.generator()) {
                    let (line, column) = self.dep_position(&gdef, d);
                    self.v.push(
                        Diagnostic::at(self.def_file(&gdef), &self.def_src(&gdef), line, column, format!("generator {:?} depends on unknown generator {:?}", gdef.name, d.generator()))
                            .hint("define it under generators:, in generators/<name>.yaml, or fix the name"),
                    );
                    continue;
                }
                let dep_gen = &self.generators[d.generator()];
                match d {
                    DepRef::EveryMachine(g) => {
                        let instances: Vec<InstanceId> = machines
                            .iter()
                            .filter(|(_, m)| m.generators.contains(g))
                            .map(|(name, _)| InstanceId {
                                scope: Scope::Machine(name.clone()),
                                generator: g.clone(),
                            })
                            .collect();
                        if dep_gen.share {
                            let (line, column) = self.dep_position(&gdef, d);
                            self.v.push(
                                Diagnostic::at(
                                    self.def_file(&gdef),
                                    &self.def_src(&gdef),
                                    line,
                                    column,
                                    format!("machines/*/{g} names a shared generator"),
                                )
                                .hint(format!("depend on {g} directly")),
                            );
                            continue;
                        }
                        deps.push(Dependency::EveryMachine {
                            generator: g.clone(),
                            instances,
                        });
                    }
                    DepRef::Same(g) => {
                        let dep_id = if dep_gen.share {
                            InstanceId {
                                scope: Scope::Shared,
                                generator: g.clone(),
                            }
                        } else if id.scope == Scope::Shared {
                            let (line, column) = self.dep_position(&gdef, d);
                            self.v.push(
                                Diagnostic::at(self.def_file(&gdef), &self.def_src(&gdef), line, column, format!("shared generator {:?} depends on {:?}, which is not shared", gdef.name, g))
                                    .hint(format!("make {g:?} share: true, or make {:?} a per-machine generator", gdef.name)),
                            );
                            continue;
                        } else {
                            InstanceId {
                                scope: id.scope.clone(),
                                generator: g.clone(),
                            }
                        };
                        let (ms, us) = {
                            let me = &self.instances[&id];
                            let ms: BTreeSet<String> = match &id.scope {
                                Scope::Machine(m) => [m.clone()].into(),
                                _ => me.machines.clone(),
                            };
                            let us: BTreeSet<String> = match &id.scope {
                                Scope::User(u) => [u.clone()].into(),
                                _ => me.users.clone(),
                            };
                            (ms, us)
                        };
                        let dep = self
                            .instances
                            .entry(dep_id.clone())
                            .or_insert_with(|| new_instance(dep_id.clone(), true));
                        if dep_id.scope == Scope::Shared {
                            // Whoever uses a dependent also uses the shared instance (its public
                            // files are part of what they are configured with).
                            let grew = ms.iter().any(|m| !dep.machines.contains(m))
                                || us.iter().any(|u| !dep.users.contains(u));
                            dep.machines.extend(ms);
                            dep.users.extend(us);
                            if grew {
                                resolved.remove(&dep_id);
                            }
                        }
                        queue.push(dep_id.clone());
                        deps.push(Dependency::One(dep_id));
                    }
                }
            }
            self.instances
                .get_mut(&id)
                .expect("queued instances exist")
                .dependencies = deps;
        }
        if !self.v.diags.is_empty() {
            return Err(ConfigError::Invalid(Diagnostics(std::mem::take(
                &mut self.v.diags,
            ))));
        }
        let settings = vars.settings;
        Ok(Config {
            store_dir: self.root.join(store_rel),
            root: self.root,
            config_file: self.file.to_path_buf(),
            backend: settings.backend.unwrap_or(Backend::Age),
            armor: settings.armor.unwrap_or(false),
            sandbox: settings.sandbox.unwrap_or(SandboxChoice::Auto),
            admins,
            users,
            machines,
            generators: self.generators,
            instances: self.instances,
        })
    }

    /// A generator named in an assignment: valid name and known (shipped ones load here).
    fn assignable(&mut self, g: &Loc<Name>) -> bool {
        if !self.v.name(self.file, self.src, "generator", g) {
            return false;
        }
        if self.known(&g.value.0) {
            return true;
        }
        if self.broken.contains(&g.value.0) {
            return false;
        }
        self.diag(g.line, g.column, format!("unknown generator {:?}", g.value.0), format!(
                "define it under generators:, in generators/<name>.yaml beside vars.yaml, or use a shipped one: {}",
                shipped::SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ));
        false
    }

    fn def_file(&self, g: &Generator) -> PathBuf {
        match &g.origin {
            Origin::Inline => self.file.to_path_buf(),
            Origin::Local(p) => p.clone(),
            Origin::Shipped => PathBuf::from(format!("<shipped>/generators/{}.yaml", g.name)),
        }
    }

    fn def_src(&self, g: &Generator) -> String {
        match &g.origin {
            Origin::Inline => self.src.to_owned(),
            Origin::Local(p) => std::fs::read_to_string(p).unwrap_or_default(),
            Origin::Shipped => shipped::find(&g.name).unwrap_or_default().to_owned(),
        }
    }

    /// Where a dependency is written in its definition file.
    fn dep_position(&self, g: &Generator, d: &DepRef) -> (u64, u64) {
        g.dependencies
            .iter()
            .position(|x| x == d)
            .and_then(|i| g.dependency_positions.get(i).copied())
            .unwrap_or((0, 0))
    }
}

fn new_instance(id: InstanceId, implicit: bool) -> Instance {
    Instance {
        id,
        dependencies: vec![],
        machines: BTreeSet::new(),
        users: BTreeSet::new(),
        implicit,
    }
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
