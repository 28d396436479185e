//! The state of each instance, as plain data: up to date, to be (re)generated and why, or
//! with secrets to re-encrypt (DESIGN §4, §5). `generate`, `rekey`, `check` and `list` all
//! start here. Computing it reads each `meta.json` once and looks for the declared files; it
//! never decrypts.
//!
//! Regeneration spreads (DESIGN §5, issue 10): whatever is (re)generated makes every instance
//! that depends on it, transitively and on every machine and user, regenerate in the same run.
//! [`plan`] therefore grows the set it plans by the dependents of what it finds to generate,
//! until nothing new is reached, so a successful run never leaves a store `check` rejects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rayon::prelude::*;

use crate::meta::Meta;
use crate::model::{Config, InstanceId};
pub use crate::recipients::Reader;
use crate::recipients::{self, RecipientIndex};
use crate::spec::Backend;
use crate::store::{Store, StoreError};

/// Why an instance must be (re)generated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// The instance has never been generated.
    Missing,
    /// A declared file is not in the store (or changed between secret and public).
    MissingFile {
        /// The file.
        file: String,
    },
    /// `meta.json` is damaged.
    Damaged {
        /// What is wrong.
        detail: String,
    },
    /// The generator's `validation` value changed.
    ValidationChanged,
    /// A dependency was regenerated since (or its set of instances changed).
    DependencyChanged {
        /// The dependency instance.
        dependency: InstanceId,
    },
    /// A dependency is regenerated in this same run.
    DependencyRegenerated {
        /// The dependency instance.
        dependency: InstanceId,
    },
    /// `--regenerate` named it.
    Requested,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => f.write_str("not generated yet"),
            Reason::MissingFile { file } => write!(f, "file {file} is missing"),
            Reason::Damaged { detail } => write!(f, "damaged: {detail}"),
            Reason::ValidationChanged => f.write_str("validation changed"),
            Reason::DependencyChanged { dependency } => {
                write!(f, "dependency {dependency} changed")
            }
            Reason::DependencyRegenerated { dependency } => {
                write!(f, "dependency {dependency} regenerated")
            }
            Reason::Requested => f.write_str("--regenerate"),
        }
    }
}

/// A secret whose recorded recipients differ from the declared ones.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct StaleSecret {
    /// The file name.
    pub file: String,
    /// Who will be able to read it after re-encryption.
    pub added: Vec<Reader>,
    /// Who will lose access.
    pub removed: Vec<Reader>,
    /// The backend whose name the secret is stored under, when it is not the store's
    /// (`settings.backend` changed): re-encryption converts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convert_from: Option<Backend>,
}

/// What happens to one instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Nothing to do.
    UpToDate,
    /// Run the generator.
    Generate {
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Re-encrypt these secrets (plaintext unchanged).
    Rekey {
        /// The stale secrets.
        secrets: Vec<StaleSecret>,
    },
}

impl Action {
    /// What is damaged, when the instance is (re)generated because it is.
    pub fn damage(&self) -> Option<&str> {
        match self {
            Action::Generate { reasons } => reasons.iter().find_map(|r| match r {
                Reason::Damaged { detail } => Some(detail.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }
}

/// One instance's entry in a plan.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePlan {
    /// The instance.
    pub id: InstanceId,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// The definition changed since generation; not regenerated (DESIGN §5), warned about.
    pub definition_changed: bool,
}

/// A plan over instances in dependency order.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    /// Instances in dependency order: the targets, what they depend on, and whatever depends
    /// on something that is regenerated.
    pub instances: Vec<InstancePlan>,
    /// The `meta.json` of every planned instance that has a valid one, read once: apply,
    /// manifests and `check` use these instead of reading them again.
    #[serde(skip)]
    pub metas: BTreeMap<InstanceId, Meta>,
}

impl Plan {
    /// Whether anything needs doing.
    pub fn is_empty(&self) -> bool {
        self.instances.iter().all(|i| i.action == Action::UpToDate)
    }

    /// Instances to generate.
    pub fn to_generate(&self) -> impl Iterator<Item = &InstancePlan> {
        self.instances
            .iter()
            .filter(|i| matches!(i.action, Action::Generate { .. }))
    }

    /// Instances with secrets to re-encrypt only.
    pub fn to_rekey(&self) -> impl Iterator<Item = &InstancePlan> {
        self.instances
            .iter()
            .filter(|i| matches!(i.action, Action::Rekey { .. }))
    }

    /// The entry of one instance.
    pub fn get(&self, id: &InstanceId) -> Option<&InstancePlan> {
        self.instances.iter().find(|p| &p.id == id)
    }
}

/// Errors computing a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Instances exist but the vault public key is gone.
    #[error("{} is missing but the store has generated instances", path.display())]
    VaultMissing {
        /// The expected path.
        path: std::path::PathBuf,
    },
}

/// What reading an instance found.
enum Read {
    /// A valid `meta.json`, the declared files that are not in the store, and the secrets
    /// stored under the other backend's name.
    Present(Meta, Vec<String>, BTreeMap<String, Backend>),
    Missing,
    Damaged(String),
}

/// Plan `targets`, everything they depend on, and (transitively) everything that depends on
/// what is regenerated. `regenerate` are instances to regenerate regardless. `vault` is the
/// vault recipient, or `None` when no vault exists yet (nothing has been generated); stale
/// recipients are computed against it.
pub fn plan(
    config: &Config,
    store: &Store,
    targets: &BTreeSet<InstanceId>,
    regenerate: &BTreeSet<InstanceId>,
    vault: Option<&str>,
) -> Result<Plan, PlanError> {
    let dag = &config.dag;
    let index = vault.map(|v| RecipientIndex::new(config, v));
    let mut reads: BTreeMap<InstanceId, Read> = BTreeMap::new();
    let mut set = dag.closure(targets.iter().cloned());
    loop {
        // Read what is new, in parallel: on a large fleet this is most of the work.
        let unread: Vec<&InstanceId> = set.iter().filter(|id| !reads.contains_key(*id)).collect();
        let fresh: Vec<(InstanceId, Result<Read, StoreError>)> = unread
            .par_iter()
            .map(|id| ((*id).clone(), read(config, store, id)))
            .collect();
        for (id, r) in fresh {
            reads.insert(id, r?);
        }
        let planned = evaluate(config, &set, &reads, regenerate, vault.zip(index.as_ref()));
        let generating: BTreeSet<InstanceId> = planned
            .iter()
            .filter(|p| matches!(p.action, Action::Generate { .. }))
            .map(|p| p.id.clone())
            .collect();
        let reached = dag.dependents(&generating);
        if reached.is_subset(&set) {
            if vault.is_none() && reads.values().any(|r| !matches!(r, Read::Missing)) {
                return Err(PlanError::VaultMissing {
                    path: store.vault_pub_path(),
                });
            }
            let metas = reads
                .into_iter()
                .filter_map(|(id, r)| match r {
                    Read::Present(m, ..) => Some((id, m)),
                    _ => None,
                })
                .collect();
            return Ok(Plan {
                instances: planned,
                metas,
            });
        }
        set = dag.closure(set.into_iter().chain(reached));
    }
}

fn read(config: &Config, store: &Store, id: &InstanceId) -> Result<Read, StoreError> {
    match store.read_meta(id) {
        Ok(Some(meta)) => {
            let mut absent = Vec::new();
            let mut converting = BTreeMap::new();
            for (name, def) in &config.generator(id).files {
                let own = store.stored_name(name, def.secret);
                let (stored, kind) = match store.kind(&format!("{id}/{own}"))? {
                    // A secret still stored by the other backend (a conversion under way) is
                    // stale, not missing: re-encryption converts it.
                    None if def.secret => {
                        let from = crate::store::layout::other_backend(store.backend());
                        let other = crate::store::layout::stored_name(name, true, from);
                        match store.kind(&format!("{id}/{other}"))? {
                            Some(crate::fs_util::Kind::File) => {
                                converting.insert(name.clone(), from);
                                continue;
                            }
                            kind => (other, kind),
                        }
                    }
                    kind => (own, kind),
                };
                match kind {
                    Some(crate::fs_util::Kind::File) => {}
                    None => absent.push(name.clone()),
                    // Not something vars writes: the store was tampered with. Not "missing",
                    // which would regenerate it silently (and rotate its secrets).
                    Some(kind) => {
                        return Ok(Read::Damaged(format!(
                            "{stored} is a {}, not a regular file",
                            kind.describe()
                        )));
                    }
                }
            }
            Ok(Read::Present(meta, absent, converting))
        }
        Ok(None) => Ok(Read::Missing),
        Err(StoreError::BadMeta { reason, .. }) => {
            Ok(Read::Damaged(format!("meta.json: {reason}")))
        }
        Err(e) => Err(e),
    }
}

/// Each instance of `set`, in dependency order, given what was read.
fn evaluate(
    config: &Config,
    set: &BTreeSet<InstanceId>,
    reads: &BTreeMap<InstanceId, Read>,
    regenerate: &BTreeSet<InstanceId>,
    vault: Option<(&str, &RecipientIndex<'_>)>,
) -> Vec<InstancePlan> {
    let mut regenerating: BTreeSet<&InstanceId> = BTreeSet::new();
    let mut out = Vec::new();
    for id in config.dag.order().iter().filter(|i| set.contains(*i)) {
        let generator = config.generator(id);
        let mut reasons = Vec::new();
        let mut definition_changed = false;
        let mut stale = Vec::new();
        match &reads[id] {
            Read::Missing => reasons.push(Reason::Missing),
            Read::Damaged(detail) => reasons.push(Reason::Damaged {
                detail: detail.clone(),
            }),
            Read::Present(meta, absent, converting) => {
                for (name, def) in &generator.files {
                    let recorded = meta.files.get(name);
                    if absent.contains(name) || recorded.is_none_or(|r| r.secret != def.secret) {
                        reasons.push(Reason::MissingFile { file: name.clone() });
                    }
                }
                if meta.validation_hash != generator.validation_hash {
                    reasons.push(Reason::ValidationChanged);
                }
                definition_changed = !generator.is_definition(&meta.definition_hash);
                let instance = &config.instances[id];
                let current: BTreeSet<String> =
                    instance.dependency_ids().map(ToString::to_string).collect();
                for dep in meta.dependencies.keys().filter(|d| !current.contains(*d)) {
                    // A dependency dropped from the definition: name it as it was recorded.
                    if let Some(dep) = crate::store::layout::parse_instance_rel(dep) {
                        reasons.push(Reason::DependencyChanged { dependency: dep });
                    }
                }
                for dep in instance.dependency_ids() {
                    let recorded = meta.dependencies.get(&dep.to_string());
                    if regenerating.contains(dep) {
                        reasons.push(Reason::DependencyRegenerated {
                            dependency: dep.clone(),
                        });
                    } else if recorded.is_none() || recorded != generation(reads.get(dep)) {
                        reasons.push(Reason::DependencyChanged {
                            dependency: dep.clone(),
                        });
                    }
                }
                if let Some((vault, index)) = vault {
                    stale = stale_secrets(config, id, meta, vault, index, converting);
                }
            }
        }
        if regenerate.contains(id) {
            reasons.push(Reason::Requested);
        }
        reasons.dedup();
        let action = if !reasons.is_empty() {
            regenerating.insert(id);
            Action::Generate { reasons }
        } else if !stale.is_empty() {
            Action::Rekey { secrets: stale }
        } else {
            Action::UpToDate
        };
        out.push(InstancePlan {
            id: id.clone(),
            action,
            definition_changed,
        });
    }
    out
}

/// The recorded generation id of a dependency that was read and is valid.
fn generation(read: Option<&Read>) -> Option<&String> {
    match read {
        Some(Read::Present(m, ..)) => Some(&m.generation),
        _ => None,
    }
}

/// The secrets of an instance whose recorded recipients, or `deploy` flag, differ from the
/// declared ones, or that are stored by the other backend (`converting`).
fn stale_secrets(
    config: &Config,
    id: &InstanceId,
    meta: &Meta,
    vault: &str,
    index: &RecipientIndex<'_>,
    converting: &BTreeMap<String, Backend>,
) -> Vec<StaleSecret> {
    let mut stale = Vec::new();
    for (name, def) in config.generator(id).files.iter().filter(|(_, d)| d.secret) {
        let want = recipients::recipients_for(config, id, def, vault);
        let recorded = meta.files.get(name);
        let have = recorded
            .and_then(|f| f.recipients.clone())
            .unwrap_or_default();
        let deploy_changed = recorded.is_some_and(|f| f.deploy != def.deploy);
        let convert_from = converting.get(name).copied();
        if want != have || deploy_changed || convert_from.is_some() {
            let want_set: BTreeSet<String> = want.into_iter().collect();
            let have_set: BTreeSet<String> = have.into_iter().collect();
            stale.push(StaleSecret {
                file: name.clone(),
                added: index.describe(
                    &want_set.difference(&have_set).cloned().collect(),
                    Some(&recipients::principals_for(config, id, def)),
                ),
                removed: index.describe(&have_set.difference(&want_set).cloned().collect(), None),
                convert_from,
            });
        }
    }
    stale
}

/// The valid `meta.json` of each of `ids`, read in parallel (a missing or damaged one is left
/// out: the planner reports those).
pub fn read_metas(
    store: &Store,
    ids: &[InstanceId],
) -> Result<BTreeMap<InstanceId, Meta>, StoreError> {
    let read: Vec<(InstanceId, Result<Option<Meta>, StoreError>)> = ids
        .par_iter()
        .map(|id| (id.clone(), store.read_meta(id)))
        .collect();
    let mut out = BTreeMap::new();
    for (id, r) in read {
        match r {
            Ok(Some(m)) => {
                out.insert(id, m);
            }
            Ok(None) | Err(StoreError::BadMeta { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
