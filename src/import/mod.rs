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
mod build;
pub mod clan;
mod declare;
pub mod sops_nix;

pub use build::ssh_to_age;
pub(crate) use build::{Builder, Candidate, CandidateFile, CandidateInstance, Readers};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::crypto::Identities;
use crate::fs_util::{Dir, IoError, Kind};
use crate::identity::{self, IdentityError};
use crate::model::{self, Config, ConfigError, InstanceId};
use crate::recipients::{self, Principal};
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
