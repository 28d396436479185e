//! `vars import agenix|clan|sops-nix` (DESIGN §7, `SCAN-SOPS-IMPORT.md` C): bring secrets that
//! already exist into vars with their values unchanged, read by the same machines and users.
//!
//! Each importer ([`agenix`], [`clan`], [`sops_nix`]) reads its source and decrypts every value
//! into memory ([`crate::secret::SecretBytes`]) with the admin's identities, then hands
//! *candidates* (a generator, its files, who reads each instance) to the common part here,
//! which makes the [`ImportPlan`]:
//!
//! 1. recipients are matched to the machines and users of vars.yaml: exactly (ssh keys
//!    without their comment), then through the age form of declared ssh-ed25519 keys
//!    ([`ssh_to_age`], the ssh-to-age conversion sops-nix fleets use); admins read
//!    everything through the vault anyway;
//! 2. the readers give the scope: one machine → a machine instance; one user (whose secrets
//!    no machine receives) → a user instance; several → `share: true`, assigned to each;
//!    nobody but admins → `deploy: false`. The readers are exact: nobody gains access but the
//!    admins (through the vault);
//! 3. what cannot be kept is listed, never dropped silently: a recipient nobody declares, a
//!    pgp or KMS key, an undeclared machine (*losses*, which need `--yes`); files nobody can
//!    decrypt (*unreadable*, which need `--skip-undecryptable`); what has no vars equivalent
//!    (*notes*).
//!
//! [`prepare`] and [`commit`] then write `generators/<gen>.yaml` for each (a script that refuses to run: the
//! values come from the import), adds the generators to the machines and users in vars.yaml
//! (`declare.rs`), and stores every value as `vars set` does ([`crate::set`]). Before the
//! store or any declaration is touched, the new declarations are loaded from a staging copy
//! and checked to give exactly the planned instances and readers; the store is written first
//! and the declarations last. Afterwards `vars check` passes and nothing regenerates; the plan
//! carries the table from the old Nix references to `config.vars.generators.…`.

pub mod agenix;
pub mod clan;
mod declare;
pub mod sops_nix;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::crypto::Identities;
use crate::fs_util::{Dir, IoError, Kind};
use crate::identity::{self, IdentityError};
use crate::model::{self, Config, ConfigError, InstanceId, Origin, Scope};
use crate::recipients::{self, Principal};
use crate::secret::SecretBytes;
use crate::set::{self, InstanceValues, SetError, Value};
use crate::store::StoreError;
use crate::store::layout::PrincipalKind;

/// Errors of an import. None carries a value.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// No identity to decrypt with.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A program the importer needs is missing or failed to start.
    #[error("{program}: {reason}")]
    Tool {
        /// The program.
        program: String,
        /// What went wrong.
        reason: String,
    },
    /// `secrets.nix` did not evaluate.
    #[error("{} does not evaluate: {stderr}", file.display())]
    Evaluate {
        /// The rules file.
        file: PathBuf,
        /// The first lines of nix-instantiate's error.
        stderr: String,
    },
    /// Reading the source failed.
    #[error(transparent)]
    Read(#[from] IoError),
    /// The source is not what the importer reads.
    #[error("{}: {reason}", path.display())]
    Source {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Two things of the source map to one vars name.
    #[error("{first} and {second} would both become {name:?}")]
    Collision {
        /// The vars name.
        name: String,
        /// The first source item.
        first: String,
        /// The second.
        second: String,
    },
    /// vars.yaml already has a generator of that name.
    #[error("{origin} would become generator {name:?}, which vars.yaml already has ({existing})")]
    Exists {
        /// The name.
        name: String,
        /// The source item.
        origin: String,
        /// Where the existing one is defined.
        existing: String,
    },
    /// A source name becomes no valid vars name.
    #[error("{origin}: {raw:?} gives no valid vars name")]
    InvalidName {
        /// The source item.
        origin: String,
        /// The name in the source.
        raw: String,
    },
    /// The source holds nothing to import (everything was left out, for these reasons).
    #[error("there is nothing to import{}", problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
    Nothing {
        /// Why each thing found was left out.
        problems: Vec<String>,
    },
    /// Access would be lost, or files cannot be read, and the person did not accept it.
    #[error("{}", problems.join("\n"))]
    Blocked {
        /// Each problem.
        problems: Vec<String>,
        /// The flag that accepts them.
        flag: &'static str,
    },
    /// vars.yaml could not be changed as planned.
    #[error("cannot add the imported generators to vars.yaml: {0}")]
    Declarations(String),
    /// The declarations (before or after the change) do not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Storing the values.
    #[error(transparent)]
    Set(#[from] SetError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where secrets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// agenix: `secrets.nix` and `.age` files.
    Agenix,
    /// clan vars (sops backend).
    Clan,
    /// sops-nix: sops YAML/JSON files.
    SopsNix,
}

impl Source {
    /// The name used in commands and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Agenix => "agenix",
            Source::Clan => "clan",
            Source::SopsNix => "sops-nix",
        }
    }
}

/// How bad a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Someone (or some key) loses access: needs `--yes`.
    Loss,
    /// A file cannot be read or decrypted: needs `--skip-undecryptable` (it is left out).
    Unreadable,
    /// Information: no vars equivalent, defaults used, things to do by hand.
    Note,
}

/// Something the import cannot carry over, or should tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// The source item (`api/token.age`, `per-machine/m/openssh/ssh.id_ed25519`).
    pub subject: String,
    /// What and why.
    pub message: String,
}

/// One file of an imported generator.
#[derive(Debug, Clone)]
pub struct PlannedFile {
    /// The vars file name.
    pub name: String,
    /// Encrypted or public.
    pub secret: bool,
    /// `false`: only admins (the vault) read it.
    pub deploy: bool,
    /// Where it comes from (the key or path in the source).
    pub origin: String,
}

/// One instance an import creates, with its values.
pub struct PlannedInstance {
    /// The instance.
    pub id: InstanceId,
    /// Who reads it (besides the vault), as `machine m` / `user u`.
    pub readers: Vec<String>,
    values: Vec<Value>,
}

/// One generator an import creates.
pub struct PlannedGenerator {
    /// Its name.
    pub name: String,
    /// The source item it comes from.
    pub origin: String,
    /// `share: true`.
    pub share: bool,
    /// Its files.
    pub files: Vec<PlannedFile>,
    /// Its instances.
    pub instances: Vec<PlannedInstance>,
}

/// A generator added to a machine's or user's `generators:` in vars.yaml.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edit {
    /// Machine or user.
    pub kind: PrincipalKind,
    /// Its name.
    pub principal: String,
    /// The generator added.
    pub generator: String,
}

/// Everything an import will do, computed (and every value decrypted) before anything changes.
pub struct ImportPlan {
    /// Where from.
    pub source: Source,
    /// The generators to create.
    pub generators: Vec<PlannedGenerator>,
    /// What cannot be carried over, and notes.
    pub findings: Vec<Finding>,
    /// Old Nix reference → new one.
    pub references: Vec<(String, String)>,
    /// vars.yaml snippets for what matched nobody (e.g. `.sops.yaml` key names).
    pub suggestions: Vec<String>,
    /// The changes to vars.yaml.
    pub edits: Vec<Edit>,
}

impl ImportPlan {
    /// Findings of a severity.
    pub fn findings_of(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity == severity)
    }
}

/// How to apply.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `--yes`: accept the losses the plan lists.
    pub accept_losses: bool,
    /// `--skip-undecryptable`: leave out what cannot be read.
    pub skip_unreadable: bool,
    /// `--trust-vault`.
    pub trust_vault: Option<String>,
}

/// What was done.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// `generators/<gen>.yaml` files written.
    pub generator_files: Vec<PathBuf>,
    /// Instances stored.
    pub instances: Vec<InstanceId>,
    /// The vault was created.
    pub created_vault: bool,
    /// Manifests written.
    pub manifests: usize,
}

/// The identities an import decrypts with: the `--identity` files, else vars' defaults
/// (DESIGN §4); without `--identity`, also sops' own age key file (`$SOPS_AGE_KEY_FILE`, else
/// `~/.config/sops/age/keys.txt`), where clan and sops-nix admins keep theirs.
pub fn identities(identity_files: &[PathBuf]) -> Result<Identities, ImportError> {
    let sops_key = identity_files
        .is_empty()
        .then(sops_key_file)
        .flatten()
        .filter(|p| p.is_file());
    let mut ids = match identity::load(identity_files) {
        Ok(ids) => ids,
        Err(IdentityError::NoneFound { .. }) if sops_key.is_some() => Identities::default(),
        Err(e) => return Err(e.into()),
    };
    if let Some(p) = sops_key
        && !ids.sources.iter().any(|s| Path::new(s) == p)
    {
        identity::add_file(&mut ids, &p)?;
    }
    Ok(ids)
}

fn sops_key_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(crate::env::SOPS_AGE_KEY_FILE).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os(crate::env::XDG_CONFIG_HOME)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(crate::env::HOME).map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("sops/age/keys.txt"))
}

/// The age recipient of an `ssh-ed25519` public key, as ssh-to-age computes it (the
/// Montgomery form of the Edwards point, bech32 with HRP `age`); `None` for other keys.
pub fn ssh_to_age(recipient: &str) -> Option<String> {
    use base64::Engine as _;
    let mut parts = recipient.split_whitespace();
    if parts.next()? != "ssh-ed25519" {
        return None;
    }
    let wire = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    // string "ssh-ed25519", string key (32 bytes)
    let (name, rest) = ssh_string(&wire)?;
    let (key, rest) = ssh_string(rest)?;
    if name != b"ssh-ed25519" || !rest.is_empty() || key.len() != 32 {
        return None;
    }
    let point = curve25519_dalek::edwards::CompressedEdwardsY(key.try_into().ok()?).decompress()?;
    let u = point.to_montgomery().to_bytes();
    bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age").ok()?, &u).ok()
}

fn ssh_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let body = b.get(4..4 + len)?;
    Some((body, &b[4 + len..]))
}

/// A recipient as matching compares it: ssh keys without their comment, age keys lowercase.
fn normalize(recipient: &str) -> String {
    let r = recipient.trim();
    if r.starts_with("ssh-") {
        r.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    } else {
        r.to_ascii_lowercase()
    }
}

/// Recipients of the source → the machines and users of vars.yaml.
pub(crate) struct Matcher {
    owners: HashMap<String, Vec<Principal>>,
}

impl Matcher {
    fn new(config: &Config) -> Self {
        let mut owners: HashMap<String, Vec<Principal>> = HashMap::new();
        let principals = config
            .machines
            .iter()
            .map(|(n, m)| (Principal::Machine(n.clone()), &m.recipients))
            .chain(
                config
                    .users
                    .iter()
                    .map(|(n, u)| (Principal::User(n.clone()), &u.recipients)),
            );
        for (p, rs) in principals {
            for r in rs {
                let mut forms = vec![normalize(r)];
                forms.extend(ssh_to_age(r));
                for f in forms {
                    let list = owners.entry(f).or_default();
                    if !list.contains(&p) {
                        list.push(p.clone());
                    }
                }
            }
        }
        Matcher { owners }
    }

    /// The declared principals owning `recipient` (also through its age form).
    pub(crate) fn owners(&self, recipient: &str) -> Vec<Principal> {
        let mut out: Vec<Principal> = Vec::new();
        let forms = std::iter::once(normalize(recipient)).chain(ssh_to_age(recipient));
        for f in forms {
            for p in self.owners.get(&f).into_iter().flatten() {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

/// Who reads an instance of a candidate.
pub(crate) enum Readers {
    /// The recipients its values are encrypted to (agenix, sops-nix).
    Recipients(Vec<String>),
    /// One machine's instance (clan `per-machine/<m>`).
    Machine(String),
    /// Named machines and users (clan `shared`, from its `machines/` and `users/` links).
    Named {
        /// Machines.
        machines: Vec<String>,
        /// Users.
        users: Vec<String>,
    },
}

/// A file of a candidate generator.
pub(crate) struct CandidateFile {
    /// The name in the source (made a vars name by the builder).
    pub raw_name: String,
    /// Encrypted or public.
    pub secret: bool,
    /// `Some(false)`: only admins read it (clan's `deploy = false`); `None`: by the readers.
    pub deploy: Option<bool>,
    /// Its key or path in the source, for messages.
    pub origin: String,
    /// How the Nix configuration referred to it.
    pub reference: String,
}

/// An instance of a candidate generator.
pub(crate) struct CandidateInstance {
    /// Who reads it.
    pub readers: Readers,
    /// Raw file name → value.
    pub values: Vec<(String, SecretBytes)>,
    /// Where it comes from, for messages.
    pub origin: String,
}

/// A generator an importer found.
pub(crate) struct Candidate {
    /// The name in the source.
    pub raw_name: String,
    /// Where it comes from.
    pub origin: String,
    /// Clan says whether it is shared; `None`: by the readers.
    pub share: Option<bool>,
    /// Its files.
    pub files: Vec<CandidateFile>,
    /// Its instances.
    pub instances: Vec<CandidateInstance>,
}

/// Collects what an importer finds and turns it into an [`ImportPlan`].
pub(crate) struct Builder<'a> {
    config: &'a Config,
    source: Source,
    pub(crate) matcher: Matcher,
    candidates: Vec<Candidate>,
    findings: Vec<Finding>,
    suggestions: Vec<String>,
}

/// A vars name from a name in the source: characters vars does not allow become `-`, leading
/// ones that cannot start a name are dropped, `..` becomes `.`.
pub(crate) fn vars_name(raw: &str) -> Option<String> {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let s = s.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    model::check_name(s).is_ok().then(|| s.to_owned())
}

impl<'a> Builder<'a> {
    pub(crate) fn new(config: &'a Config, source: Source) -> Self {
        Builder {
            config,
            source,
            matcher: Matcher::new(config),
            candidates: Vec::new(),
            findings: Vec::new(),
            suggestions: Vec::new(),
        }
    }

    pub(crate) fn finding(
        &mut self,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) {
        let f = Finding {
            severity,
            subject: crate::text::escape(&subject.into()).into_owned(),
            message: message.into(),
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    pub(crate) fn suggest(&mut self, line: String) {
        if !self.suggestions.contains(&line) {
            self.suggestions.push(line);
        }
    }

    pub(crate) fn config_is_admin(&self, user: &str) -> bool {
        self.config.admins.iter().any(|a| a == user)
    }

    pub(crate) fn add(&mut self, c: Candidate) {
        self.candidates.push(c);
    }

    /// The principals reading an instance with these recipients; unmatched ones are losses.
    fn readers_of(
        &mut self,
        origin: &str,
        recipients: &[String],
    ) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
        let (mut machines, mut users, mut admins) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for r in recipients {
            let owners = self.matcher.owners(r);
            if owners.is_empty() {
                let short: String = r.chars().take(32).collect();
                self.finding(
                    Severity::Loss,
                    origin,
                    format!(
                        "recipient {}… is no machine's or user's in vars.yaml: it loses access",
                        crate::text::escape(&short)
                    ),
                );
            }
            for p in owners {
                match p {
                    Principal::Machine(m) => {
                        machines.insert(m);
                    }
                    Principal::User(u) if self.config.admins.contains(&u) => {
                        admins.insert(u);
                    }
                    Principal::User(u) => {
                        users.insert(u);
                    }
                    Principal::Vault => {}
                }
            }
        }
        (machines, users, admins)
    }

    /// Scope, assignments and whether anyone but the vault reads it.
    fn place(
        &self,
        machines: &BTreeSet<String>,
        users: &BTreeSet<String>,
        admins: &BTreeSet<String>,
        share: Option<bool>,
    ) -> (Scope, Vec<(PrincipalKind, String)>, bool) {
        let listed = |u: &String| self.config.machines.values().any(|m| m.users.contains(u));
        let assign_all = || {
            machines
                .iter()
                .map(|m| (PrincipalKind::Machine, m.clone()))
                .chain(users.iter().map(|u| (PrincipalKind::User, u.clone())))
                .collect::<Vec<_>>()
        };
        match (machines.len(), users.len(), share) {
            (0, 0, _) => {
                let admin = admins
                    .iter()
                    .next()
                    .or_else(|| self.config.admins.first())
                    .cloned()
                    .unwrap_or_default();
                let scope = if share == Some(true) {
                    Scope::Shared
                } else {
                    Scope::User(admin.clone())
                };
                (scope, vec![(PrincipalKind::User, admin)], false)
            }
            (1, 0, None | Some(false)) => {
                let m = machines.iter().next().expect("one").clone();
                (
                    Scope::Machine(m.clone()),
                    vec![(PrincipalKind::Machine, m)],
                    true,
                )
            }
            (0, 1, None | Some(false)) if !users.iter().any(listed) => {
                let u = users.iter().next().expect("one").clone();
                (Scope::User(u.clone()), vec![(PrincipalKind::User, u)], true)
            }
            _ => (Scope::Shared, assign_all(), true),
        }
    }

    /// Make the plan: names, readers, scopes, edits, references.
    pub(crate) fn finish(mut self) -> Result<ImportPlan, ImportError> {
        let candidates = std::mem::take(&mut self.candidates);
        if candidates.iter().all(|c| c.instances.is_empty()) {
            return Err(self.nothing());
        }
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut generators = Vec::new();
        let mut references = Vec::new();
        let mut edits = BTreeSet::new();
        for c in candidates {
            if c.instances.is_empty() {
                continue;
            }
            let name = vars_name(&c.raw_name).ok_or_else(|| ImportError::InvalidName {
                origin: c.origin.clone(),
                raw: c.raw_name.clone(),
            })?;
            if let Some(first) = names.insert(name.clone(), c.origin.clone()) {
                return Err(ImportError::Collision {
                    name,
                    first,
                    second: c.origin,
                });
            }
            match self.config.generators.get(&name) {
                Some(g) if g.origin != Origin::Shipped || self.in_use(&name) => {
                    return Err(ImportError::Exists {
                        name,
                        origin: c.origin,
                        existing: match &g.origin {
                            Origin::Inline => "inline in vars.yaml".into(),
                            Origin::Local(p) => p.display().to_string(),
                            Origin::Shipped => "shipped with vars, and in use".into(),
                        },
                    });
                }
                _ if crate::model::shipped::find(&name).is_some() => self.finding(
                    Severity::Note,
                    &c.origin,
                    format!("generator {name} hides the shipped generator of that name"),
                ),
                _ => {}
            }
            // File names.
            let mut file_names: BTreeMap<String, String> = BTreeMap::new();
            let mut raw_to_file: HashMap<String, usize> = HashMap::new();
            let mut files: Vec<PlannedFile> = Vec::new();
            for f in &c.files {
                let fname = vars_name(&f.raw_name)
                    .filter(|n| model::check_file_name(n).is_ok())
                    .or_else(|| {
                        vars_name(&format!("{}-file", f.raw_name))
                            .filter(|n| model::check_file_name(n).is_ok())
                    })
                    .ok_or_else(|| ImportError::InvalidName {
                        origin: f.origin.clone(),
                        raw: f.raw_name.clone(),
                    })?;
                if let Some(first) = file_names.insert(fname.clone(), f.origin.clone()) {
                    return Err(ImportError::Collision {
                        name: format!("{name}/{fname}"),
                        first,
                        second: f.origin.clone(),
                    });
                }
                raw_to_file.insert(f.raw_name.clone(), files.len());
                files.push(PlannedFile {
                    name: fname.clone(),
                    secret: f.secret,
                    deploy: f.deploy.unwrap_or(true),
                    origin: f.origin.clone(),
                });
                references.push((
                    f.reference.clone(),
                    format!("config.vars.generators.{name}.files.{fname}.path"),
                ));
            }
            // Instances.
            let mut instances = Vec::new();
            let mut share = c.share.unwrap_or(false);
            let mut anyone_reads = false;
            for inst in c.instances {
                let (machines, users, admins) = match &inst.readers {
                    Readers::Recipients(rs) => self.readers_of(&inst.origin, rs),
                    Readers::Machine(m) => {
                        if !self.config.machines.contains_key(m) {
                            self.finding(
                                Severity::Loss,
                                &inst.origin,
                                format!("machine {} is not declared in vars.yaml: its instance is left out", crate::text::escape(m)),
                            );
                            continue;
                        }
                        (
                            BTreeSet::from([m.clone()]),
                            BTreeSet::new(),
                            BTreeSet::new(),
                        )
                    }
                    Readers::Named { machines, users } => {
                        let mut ms = BTreeSet::new();
                        let mut us = BTreeSet::new();
                        let mut ads = BTreeSet::new();
                        for m in machines {
                            if self.config.machines.contains_key(m) {
                                ms.insert(m.clone());
                            } else {
                                self.finding(
                                    Severity::Loss,
                                    &inst.origin,
                                    format!(
                                        "machine {} is not declared in vars.yaml: it loses access",
                                        crate::text::escape(m)
                                    ),
                                );
                            }
                        }
                        for u in users {
                            if self.config.admins.contains(u) {
                                ads.insert(u.clone());
                            } else if self.config.users.contains_key(u) {
                                us.insert(u.clone());
                            } else {
                                self.finding(
                                    Severity::Loss,
                                    &inst.origin,
                                    format!(
                                        "user {} is not declared in vars.yaml: they lose access",
                                        crate::text::escape(u)
                                    ),
                                );
                            }
                        }
                        (ms, us, ads)
                    }
                };
                let (scope, assign, reads) = self.place(&machines, &users, &admins, c.share);
                anyone_reads |= reads;
                if scope == Scope::Shared {
                    share = true;
                }
                let id = InstanceId {
                    scope,
                    generator: name.clone(),
                };
                if instances.iter().any(|i: &PlannedInstance| i.id == id) {
                    return Err(ImportError::Collision {
                        name: id.to_string(),
                        first: c.origin.clone(),
                        second: inst.origin.clone(),
                    });
                }
                for (kind, principal) in assign {
                    edits.insert(Edit {
                        kind,
                        principal,
                        generator: name.clone(),
                    });
                }
                let mut values = Vec::new();
                for (raw, bytes) in inst.values {
                    let idx = raw_to_file[&raw];
                    values.push(Value {
                        file: files[idx].name.clone(),
                        bytes,
                    });
                }
                let readers = machines
                    .iter()
                    .map(|m| format!("machine {m}"))
                    .chain(users.iter().map(|u| format!("user {u}")))
                    .collect();
                instances.push(PlannedInstance {
                    id,
                    readers,
                    values,
                });
            }
            if instances.is_empty() {
                continue;
            }
            if share && instances.len() > 1 {
                return Err(ImportError::Collision {
                    name: format!("shared/{name}"),
                    first: c.origin.clone(),
                    second: "another instance of it".into(),
                });
            }
            if !anyone_reads {
                for f in &mut files {
                    f.deploy = false;
                }
            }
            // Every instance must give every file (vars instances are whole).
            for inst in &instances {
                let given: BTreeSet<&str> = inst.values.iter().map(|v| v.file.as_str()).collect();
                if let Some(f) = files.iter().find(|f| !given.contains(f.name.as_str())) {
                    return Err(ImportError::Source {
                        path: PathBuf::from(&c.origin),
                        reason: format!(
                            "{} has no value for {} (every instance of a generator needs every file)",
                            inst.id, f.origin
                        ),
                    });
                }
            }
            generators.push(PlannedGenerator {
                name,
                origin: c.origin,
                share,
                files,
                instances,
            });
        }
        if generators.is_empty() {
            return Err(self.nothing());
        }
        references.sort();
        references.dedup();
        self.finding(
            Severity::Note,
            "owner, group, mode",
            format!(
                "the imported files get vars' defaults (owner root, group root, mode 0400; a user instance's owner is the user): set files.<file>.owner/group/mode in generators/<gen>.yaml as your {} configuration had them",
                self.source.as_str()
            ),
        );
        self.findings.sort_by(|a, b| {
            (a.severity, &a.subject, &a.message).cmp(&(b.severity, &b.subject, &b.message))
        });
        Ok(ImportPlan {
            source: self.source,
            generators,
            findings: self.findings,
            references,
            suggestions: self.suggestions,
            edits: edits.into_iter().collect(),
        })
    }

    fn nothing(&self) -> ImportError {
        ImportError::Nothing {
            problems: self
                .findings
                .iter()
                .filter(|f| f.severity != Severity::Note)
                .map(|f| format!("{}: {}", f.subject, f.message))
                .collect(),
        }
    }

    fn in_use(&self, name: &str) -> bool {
        self.config.instances.keys().any(|id| id.generator == name)
    }
}

/// A plan checked and staged, ready to [`commit`]: the new declarations were loaded from a
/// staging copy and give exactly the planned instances and readers. Nothing of the
/// repository was written yet.
pub struct Prepared {
    staged: Config,
    root: PathBuf,
    vars_file: std::ffi::OsString,
    new_text: String,
    new_files: Vec<(String, String)>,
    values: Vec<InstanceValues>,
    trust_vault: Option<String>,
    _staging: tempfile::TempDir,
}

/// Refuse unaccepted losses, then stage and check the new declarations; writes nothing.
pub fn prepare(
    config: &Config,
    config_file: &Path,
    plan: ImportPlan,
    opts: &Options,
) -> Result<Prepared, ImportError> {
    let listed = |severity| -> Vec<String> {
        plan.findings_of(severity)
            .map(|f| format!("{}: {}", f.subject, f.message))
            .collect()
    };
    let losses = listed(Severity::Loss);
    if !losses.is_empty() && !opts.accept_losses {
        return Err(ImportError::Blocked {
            problems: losses,
            flag: "--yes",
        });
    }
    let unreadable = listed(Severity::Unreadable);
    if !unreadable.is_empty() && !opts.skip_unreadable {
        return Err(ImportError::Blocked {
            problems: unreadable,
            flag: "--skip-undecryptable",
        });
    }
    let root = match config_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let root_dir = Dir::open(&root)?;
    let vars_file = config_file
        .file_name()
        .ok_or_else(|| ImportError::Declarations("the declarations file has no name".into()))?
        .to_owned();
    let old_text = String::from_utf8(
        root_dir
            .read(Path::new(&vars_file))?
            .ok_or_else(|| ImportError::Declarations("vars.yaml disappeared".into()))?,
    )
    .map_err(|_| ImportError::Declarations("vars.yaml is not UTF-8".into()))?;
    let new_text = declare::add_generators(&old_text, &plan.edits)?;
    let mut new_files = Vec::new();
    for g in &plan.generators {
        let rel = format!("generators/{}.yaml", g.name);
        if root_dir.kind(&rel)?.is_some() {
            return Err(ImportError::Exists {
                name: g.name.clone(),
                origin: g.origin.clone(),
                existing: root.join(&rel).display().to_string(),
            });
        }
        new_files.push((rel, declare::generator_yaml(plan.source, g)));
    }
    // Stage: the new declarations beside copies of the existing generator files.
    let staging = tempfile::Builder::new()
        .prefix("vars-import-")
        .tempdir()
        .map_err(|e| {
            ImportError::Declarations(format!("cannot create a staging directory: {e}"))
        })?;
    let staged_yaml = staging.path().join(&vars_file);
    crate::fs_util::write_new(&staged_yaml, new_text.as_bytes(), 0o644)?;
    crate::fs_util::create_dir_all(&staging.path().join("generators"))?;
    if let Some(gens) = root_dir.open_dir("generators")? {
        for e in gens.entries()? {
            let Some(name) = e.name_str() else { continue };
            if e.kind == Kind::File && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                let bytes = gens.read(name)?.unwrap_or_default();
                let to = staging.path().join("generators").join(name);
                crate::fs_util::write_new(&to, &bytes, 0o644)?;
            }
        }
    }
    for (rel, text) in &new_files {
        crate::fs_util::write_new(&staging.path().join(rel), text.as_bytes(), 0o644)?;
    }
    let staged = model::load(&staged_yaml)?;
    verify(config, &staged, &plan)?;
    let values = plan
        .generators
        .into_iter()
        .flat_map(|g| g.instances)
        .map(|i| InstanceValues {
            id: i.id,
            values: i.values,
        })
        .collect();
    Ok(Prepared {
        staged,
        root,
        vars_file,
        new_text,
        new_files,
        values,
        trust_vault: opts.trust_vault.clone(),
        _staging: staging,
    })
}

/// Write a prepared import: the values into `config`'s store first (a failure leaves
/// instances nothing declares yet, which `check` names), then `generators/<gen>.yaml`, then
/// vars.yaml. The caller holds the store lock.
pub fn commit(config: &Config, prepared: Prepared) -> Result<ImportReport, ImportError> {
    let store = config.store();
    let mut report = ImportReport {
        instances: prepared.values.iter().map(|v| v.id.clone()).collect(),
        ..ImportReport::default()
    };
    let set_report = set::set(
        &prepared.staged,
        &store,
        prepared.values,
        &set::Options {
            trust_vault: prepared.trust_vault,
        },
    )?;
    report.created_vault = set_report.created_vault;
    report.manifests = set_report.manifests.len();
    let root_dir = Dir::open(&prepared.root)?;
    for (rel, text) in &prepared.new_files {
        let gens = root_dir.create_dir_all("generators")?;
        let name = Path::new(rel).file_name().expect("generators/<name>.yaml");
        let path = prepared.root.join(rel);
        let mut f = gens.create_file(name, 0o644, crate::fs_util::Create::New)?;
        use std::io::Write as _;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|source| IoError {
                action: "write",
                path: path.clone(),
                source,
            })?;
        report.generator_files.push(path);
    }
    root_dir.write_atomic(
        Path::new(&prepared.vars_file),
        prepared.new_text.as_bytes(),
        0o644,
    )?;
    Ok(report)
}

/// The staged declarations give exactly the planned instances and readers, and nothing else
/// changed: the same machines, users, recipients and admins, and every instance that existed
/// still exists.
fn verify(old: &Config, new: &Config, plan: &ImportPlan) -> Result<(), ImportError> {
    let bad = |why: String| Err(ImportError::Declarations(why));
    if old.admins != new.admins
        || old.machines.keys().ne(new.machines.keys())
        || old.users.keys().ne(new.users.keys())
    {
        return bad("the machines, users or admins changed".into());
    }
    for (name, m) in &old.machines {
        if new.machines[name].recipients != m.recipients || new.machines[name].users != m.users {
            return bad(format!("machine {name} changed"));
        }
    }
    for (name, u) in &old.users {
        if new.users[name].recipients != u.recipients {
            return bad(format!("user {name} changed"));
        }
    }
    let planned: BTreeSet<&InstanceId> = plan
        .generators
        .iter()
        .flat_map(|g| g.instances.iter().map(|i| &i.id))
        .collect();
    let want: BTreeSet<&InstanceId> = old
        .instances
        .keys()
        .chain(planned.iter().copied())
        .collect();
    let have: BTreeSet<&InstanceId> = new.instances.keys().collect();
    if want != have {
        let extra: Vec<String> = have.difference(&want).map(|i| i.to_string()).collect();
        let missing: Vec<String> = want.difference(&have).map(|i| i.to_string()).collect();
        return bad(format!(
            "the new vars.yaml gives other instances than planned (unexpected: {}; missing: {})",
            extra.join(", "),
            missing.join(", ")
        ));
    }
    for g in &plan.generators {
        for inst in &g.instances {
            let generator = new.generator(&inst.id);
            for f in &g.files {
                let def = &generator.files[&f.name];
                let readers: Vec<String> = recipients::principals_for(new, &inst.id, def)
                    .iter()
                    .filter(|p| **p != Principal::Vault)
                    .map(ToString::to_string)
                    .collect();
                let want: &[String] = if f.deploy { &inst.readers } else { &[] };
                if readers != want || def.secret != f.secret || def.deploy != f.deploy {
                    return bad(format!(
                        "{}/{} would be read by {} instead of {}",
                        inst.id,
                        f.name,
                        readers.join(", "),
                        want.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_map_to_their_age_form() {
        // ed25519 public key → X25519: checked against the scalar multiplication itself.
        let seed = [42u8; 32];
        use sha2::Digest as _;
        let h = sha2::Sha512::digest(seed);
        let scalar: [u8; 32] = h[..32].try_into().unwrap();
        let ed = curve25519_dalek::EdwardsPoint::mul_base_clamped(scalar).compress();
        let mut wire = Vec::new();
        for part in [&b"ssh-ed25519"[..], ed.as_bytes()] {
            wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
            wire.extend_from_slice(part);
        }
        use base64::Engine as _;
        let ssh = format!(
            "ssh-ed25519 {} host",
            base64::engine::general_purpose::STANDARD.encode(&wire)
        );
        let x = curve25519_dalek::MontgomeryPoint::mul_base_clamped(scalar);
        let want =
            bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age").unwrap(), x.as_bytes())
                .unwrap();
        assert_eq!(ssh_to_age(&ssh).unwrap(), want);
        assert!(crate::crypto::Recipient::parse(&want).is_ok());
        assert_eq!(ssh_to_age("ssh-rsa AAAA"), None);
        assert_eq!(ssh_to_age("age1xyz"), None);
    }

    #[test]
    fn names_from_the_source_become_vars_names() {
        assert_eq!(vars_name("api/token").as_deref(), Some("api-token"));
        assert_eq!(vars_name(".hidden..x").as_deref(), Some("hidden.x"));
        assert_eq!(vars_name("_x y").as_deref(), Some("x-y"));
        assert_eq!(vars_name("/"), None);
        assert_eq!(vars_name(""), None);
    }

    #[test]
    fn matching_ignores_comments_and_case() {
        assert_eq!(
            normalize("ssh-ed25519 AAAAC3 root@host"),
            normalize("ssh-ed25519 AAAAC3 other")
        );
        assert_eq!(normalize(" AGE1ABC "), "age1abc");
    }
}
