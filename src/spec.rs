//! The YAML formats exactly as written: `vars.yaml` and `generators/<name>.yaml`.
//!
//! These serde structs mirror the files one to one (unknown keys are errors) and carry the
//! source position of every value a later check may complain about ([`Loc`]). They know nothing
//! of scopes or recipients: [`crate::model`] validates them into domain types. The JSON Schemas
//! in `schema/` are generated from these types (`vars schema`).

use std::collections::BTreeMap;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

/// The format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A value with the 1-based line and column where it appears in its YAML file.
///
/// Equality and ordering look at the value only, so `Loc<String>` works as a map key.
#[derive(Clone, Debug)]
pub struct Loc<T> {
    /// The value itself.
    pub value: T,
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
}

impl<T> Loc<T> {
    /// A value without a source position (defaults, tests).
    pub fn unplaced(value: T) -> Self {
        Loc {
            value,
            line: 0,
            column: 0,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loc<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Loc {
            value: s.value,
            line: s.referenced.line(),
            column: s.referenced.column(),
        })
    }
}

impl<T: JsonSchema> JsonSchema for Loc<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl<T: PartialEq> PartialEq for Loc<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T: Eq> Eq for Loc<T> {}
impl<T: Ord> PartialOrd for Loc<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: Ord> Ord for Loc<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl<T: fmt::Display> fmt::Display for Loc<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// The name of a machine, user, tag, generator, file or prompt: `[A-Za-z0-9][A-Za-z0-9._-]*`.
/// The schema carries the pattern; [`crate::model`] enforces it (and the extra rules for file
/// names) with a positioned error.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct Name(pub String);

impl JsonSchema for Name {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Name".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
            "description": "A name: letters, digits, '.', '_' and '-', starting with a letter or digit."
        })
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A map keyed by positioned names, in name order.
pub type NameMap<V> = BTreeMap<Loc<Name>, V>;

/// `vars.yaml`: the whole declaration of a fleet.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    title = "vars.yaml",
    description = "Declarations of a vars fleet: machines, users, tags and generators."
)]
pub struct VarsFile {
    /// Format version; must be 1.
    pub version: Loc<u32>,
    /// Store location, encryption backend and sandbox choice.
    #[serde(default)]
    pub settings: Settings,
    /// Users who can decrypt everything, through the vault key.
    #[serde(default)]
    pub admins: Vec<Loc<Name>>,
    /// People: their age/ssh recipients and per-user generators.
    #[serde(default)]
    pub users: NameMap<UserSpec>,
    /// Hosts: their recipients (host keys), tags, users and generators.
    #[serde(default)]
    pub machines: NameMap<MachineSpec>,
    /// Named groups of generators assigned to machines.
    #[serde(default)]
    pub tags: NameMap<TagSpec>,
    /// Inline generator definitions (also read from `generators/*.yaml` beside vars.yaml).
    #[serde(default)]
    pub generators: NameMap<GeneratorSpec>,
    /// `vars scan` settings: known false positives, each with its reason.
    #[serde(default)]
    pub scan: ScanSpec,
}

/// `scan:` in vars.yaml.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScanSpec {
    /// Findings of content rules that are known and accepted. Store rules cannot be allowed.
    #[serde(default)]
    pub allow: Vec<Loc<AllowSpec>>,
}

/// One entry of `scan.allow`: findings matching every given condition are allowed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AllowSpec {
    /// A glob over repository-relative paths (`testdata/keys/**`); `*` stays within one
    /// directory, `**` spans any number.
    pub path: Option<Loc<String>>,
    /// Only these rules (default: every content rule).
    #[serde(default)]
    pub rules: Vec<Loc<String>>,
    /// One finding, by the `fingerprint` vars scan prints (`sha256:…`): it survives edits
    /// elsewhere in the file and line moves.
    pub fingerprint: Option<Loc<String>>,
    /// Why this is not a leak (shown in reviews; required).
    pub reason: Loc<String>,
}

/// `settings:` in vars.yaml.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Output directory, relative to vars.yaml. Default: `vars`.
    pub store: Option<Loc<String>>,
    /// Encryption backend. Default: `age`.
    pub backend: Option<Loc<Backend>>,
    /// Write ASCII-armored `.age` files. Default: false.
    pub armor: Option<bool>,
    /// Sandbox for generator scripts. Default: `auto`.
    pub sandbox: Option<SandboxChoice>,
}

/// `settings.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// In-process age encryption.
    Age,
    /// The `sops` program.
    Sops,
}

impl Backend {
    /// The name as written in vars.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Age => "age",
            Backend::Sops => "sops",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `settings.sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxChoice {
    /// bubblewrap on Linux, sandbox-exec on macOS; an error if missing.
    Auto,
    /// Run scripts unsandboxed (explicit opt-out).
    None,
}

/// `users.<name>`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserSpec {
    /// age recipients (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`, plugin recipients).
    #[serde(default)]
    pub recipients: Vec<Loc<String>>,
    /// Per-user generators.
    #[serde(default)]
    pub generators: Vec<Loc<Name>>,
}

/// `machines.<name>`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MachineSpec {
    /// The host's recipients, usually its ssh host key: a recipient string, or
    /// `{ generated: GEN/FILE }`, a public file of one of the machine's own instances (a host
    /// key vars generates; see `vars bootstrap`).
    #[serde(default)]
    pub recipients: Vec<Loc<RecipientSpec>>,
    /// Tags whose generators this machine gets.
    #[serde(default)]
    pub tags: Vec<Loc<Name>>,
    /// People who use this machine: their user secrets are also encrypted to it.
    #[serde(default)]
    pub users: Vec<Loc<Name>>,
    /// Generators assigned directly.
    #[serde(default)]
    pub generators: Vec<Loc<Name>>,
}

/// One entry of a machine's `recipients`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RecipientSpec {
    /// An age recipient string (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`, a plugin recipient).
    Key(String),
    /// A public file of one of the machine's own instances, e.g.
    /// `{ generated: ssh-host-ed25519/ssh_host_ed25519_key.pub }`.
    Generated(GeneratedRecipient),
}

/// `{ generated: GEN/FILE }` in a machine's `recipients`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratedRecipient {
    /// `GEN/FILE`: a generator assigned to this machine and one of its public files.
    pub generated: String,
}

/// `tags.<name>`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TagSpec {
    /// Generators every machine with this tag gets.
    #[serde(default)]
    pub generators: Vec<Loc<Name>>,
}

/// A generator definition: inline in vars.yaml, in `generators/<name>.yaml`, or shipped.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[schemars(
    title = "vars generator",
    description = "One vars generator definition."
)]
pub struct GeneratorSpec {
    /// Start from this shipped generator and change only what is given here: `description`,
    /// `validation` (merged key by key), `share`, `timeout`, and per file `owner`, `group`,
    /// `mode`, `deploy`, `needed-for`, per prompt `description`, `type`, `persist`;
    /// `runtime-inputs` are added after the shipped ones. The script, files, prompts and
    /// dependencies stay the shipped generator's.
    pub extends: Option<Loc<Name>>,
    /// Shown by `vars list` and `vars generators`.
    pub description: Option<String>,
    /// The options the script reads from `validation` (as `$validation_<name>`), each with a
    /// description and a default. `validation` may then only name these.
    #[serde(default)]
    pub parameters: NameMap<ParameterSpec>,
    /// The files the script writes to `$out`.
    #[serde(default)]
    pub files: NameMap<FileSpec>,
    /// Values asked from the person running `vars generate`, at `$prompts/<name>`.
    #[serde(default)]
    pub prompts: NameMap<PromptSpec>,
    /// Generators whose outputs appear at `$in/<generator>/<file>`. `machines/*/GEN` gives the
    /// public files of every machine's instance of GEN at `$in/GEN/<machine>/<file>`.
    #[serde(default)]
    pub dependencies: Vec<Loc<String>>,
    /// The only programs on PATH besides bash and coreutils.
    #[serde(default)]
    pub runtime_inputs: Vec<Loc<String>>,
    /// Run with `bash -euo pipefail` in the sandbox. Required unless `extends` is given.
    pub script: Option<Loc<String>>,
    /// One value for every machine that uses it, stored under `shared/`. Default: false.
    pub share: Option<bool>,
    /// Any value; changing it regenerates the instance. With `parameters`, a mapping of
    /// parameter values.
    pub validation: Option<Loc<serde_json::Value>>,
    /// Allow network access in the sandbox. Such a generator may have no prompts and depend
    /// only on `machines/*/GEN` (public files): it gets nothing secret to send.
    #[serde(default)]
    pub network: bool,
    /// Kill the script after this long: `90s`, `5m`, `1h`, at most `24h`. Default: `60s`.
    pub timeout: Option<Loc<String>>,
}

/// `parameters.<name>` of a generator: one option its script reads from `validation`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ParameterSpec {
    /// What the parameter means and which values it takes.
    pub description: String,
    /// The value the script sees when `validation` does not set it. A default is part of the
    /// definition (like the script), not of `validation`: changing it regenerates nothing.
    pub default: Option<serde_json::Value>,
}

/// `files.<name>` of a generator.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileSpec {
    /// Secret files are encrypted; public ones are stored as-is. Default: true.
    pub secret: Option<bool>,
    /// false: never sent to hosts or users, only admins can read it. Default: true.
    pub deploy: Option<bool>,
    /// Owner applied by `vars install`. Default: root.
    pub owner: Option<String>,
    /// Group applied by `vars install`. Default: root.
    pub group: Option<String>,
    /// Octal permission mode applied by `vars install`, as a string (`"0440"`, `"640"`; no
    /// setuid, setgid or sticky bit). Default: "0400".
    pub mode: Option<Loc<String>>,
    /// `users`: installed before users are created. Default: `services`.
    pub needed_for: Option<NeededFor>,
}

/// `files.<name>.needed-for`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NeededFor {
    /// Installed before users are created (password hashes).
    Users,
    /// Installed with the other secrets.
    Services,
}

/// `prompts.<name>` of a generator.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PromptSpec {
    /// Shown when asking.
    pub description: Option<String>,
    /// How the value is entered. Default: `line`.
    #[serde(rename = "type")]
    pub kind: Option<PromptKind>,
    /// Store the value as a secret file of the same name. Default: false.
    pub persist: Option<bool>,
}

/// `prompts.<name>.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PromptKind {
    /// One visible line.
    Line,
    /// One line, not echoed.
    Hidden,
    /// Several lines until end of input, visible.
    Multiline,
    /// Several lines until end of input, not echoed.
    MultilineHidden,
}

impl PromptKind {
    /// The name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Line => "line",
            PromptKind::Hidden => "hidden",
            PromptKind::Multiline => "multiline",
            PromptKind::MultilineHidden => "multiline-hidden",
        }
    }
}

/// The JSON Schema of `vars.yaml`, as committed in `schema/vars.schema.json`.
pub fn vars_schema() -> String {
    render_schema(schemars::schema_for!(VarsFile))
}

/// The JSON Schema of one generator file, as committed in `schema/generator.schema.json`.
pub fn generator_schema() -> String {
    render_schema(schemars::schema_for!(GeneratorSpec))
}

fn render_schema(schema: Schema) -> String {
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema is plain JSON");
    s.push('\n');
    s
}
