//! What `generate` and `check` will do, as plain data: for each instance, whether it is up to
//! date, must be (re)generated and why, or only has secrets to re-encrypt (DESIGN §5, §4).
//! Computing a plan reads `meta.json` files and file names only; it never decrypts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::dag::{Dag, DagError};
use crate::model::{Config, InstanceId};
use crate::recipients;
use crate::store::{Store, StoreError};

/// Why an instance must be (re)generated.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// The instance has never been generated.
    Missing,
    /// A declared file is not in the store.
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
        dependency: String,
    },
    /// A dependency is regenerated in this same run.
    DependencyRegenerated {
        /// The dependency instance.
        dependency: String,
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
                write!(f, "dependency {dependency} is regenerated")
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
    /// Principals that will be able to read it after re-encryption.
    pub added: Vec<String>,
    /// Principals that will lose access.
    pub removed: Vec<String>,
    /// The declared recipients (sorted).
    #[serde(skip)]
    pub recipients: Vec<String>,
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

/// One instance's entry in a plan.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct InstancePlan {
    /// `machines/m/gen`, `users/u/gen` or `shared/gen`.
    pub instance: String,
    /// The instance id.
    #[serde(skip)]
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
    /// Whether the vault key must be created first.
    pub create_vault: bool,
    /// Instances in dependency order.
    pub instances: Vec<InstancePlan>,
    /// The meta.json files read while planning (valid ones), for callers that need them too.
    #[serde(skip)]
    pub metas: BTreeMap<InstanceId, crate::meta::Meta>,
}

impl Plan {
    /// Whether anything needs doing.
    pub fn is_empty(&self) -> bool {
        !self.create_vault && self.instances.iter().all(|i| i.action == Action::UpToDate)
    }

    /// Instances to generate.
    pub fn to_generate(&self) -> impl Iterator<Item = &InstancePlan> {
        self.instances
            .iter()
            .filter(|i| matches!(i.action, Action::Generate { .. }))
    }
}

/// Errors computing a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The instances form a cycle.
    #[error(transparent)]
    Dag(#[from] DagError),
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

/// Plan the instances in `targets` and everything they depend on.
/// `regenerate` are instances to regenerate regardless. `vault` is the vault recipient, or
/// `None` when no vault exists yet (nothing has been generated).
pub fn plan(
    config: &Config,
    store: &Store,
    dag: &Dag,
    targets: &BTreeSet<InstanceId>,
    regenerate: &BTreeSet<InstanceId>,
    vault: Option<&str>,
) -> Result<Plan, PlanError> {
    let closure = dag.closure(targets.iter().cloned());
    let order = dag.topo_order()?;
    // Read every meta.json, and look for the declared files, up front and in parallel: on a
    // large fleet this is most of the work.
    type Read = (Result<Option<crate::meta::Meta>, StoreError>, Vec<String>);
    let mut metas: BTreeMap<InstanceId, Read> = {
        use rayon::prelude::*;
        let ids: Vec<&InstanceId> = closure.iter().collect();
        ids.par_iter()
            .map(|id| {
                let meta = store.read_meta(id);
                let absent = match meta {
                    Ok(Some(_)) => config
                        .generator(id)
                        .files
                        .iter()
                        .filter(|(name, def)| !store.file_path(id, name, def.secret).is_file())
                        .map(|(name, _)| name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                ((*id).clone(), (meta, absent))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    };
    let mut regenerating: BTreeSet<InstanceId> = BTreeSet::new();
    let mut read = BTreeMap::new();
    let mut generations: BTreeMap<InstanceId, Option<String>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut any_present = false;
    let index = vault.map(|v| recipients::RecipientIndex::new(config, v));
    for id in order.into_iter().filter(|i| closure.contains(i)) {
        let generator = config.generator(&id);
        let mut reasons = Vec::new();
        let (meta, absent) = metas
            .remove(&id)
            .expect("every instance of the closure was read");
        let meta = match meta {
            Ok(Some(m)) => {
                read.insert(id.clone(), m);
                read.get(&id)
            }
            Ok(None) => None,
            Err(StoreError::BadMeta { reason, .. }) => {
                reasons.push(Reason::Damaged {
                    detail: format!("meta.json: {reason}"),
                });
                None
            }
            Err(e) => return Err(e.into()),
        };
        any_present |= meta.is_some();
        generations.insert(id.clone(), meta.as_ref().map(|m| m.generation.clone()));
        let mut definition_changed = false;
        let mut stale = Vec::new();
        match &meta {
            None if reasons.is_empty() => reasons.push(Reason::Missing),
            None => {}
            Some(meta) => {
                for (name, def) in &generator.files {
                    let recorded = meta.files.get(name);
                    let present = !absent.contains(name);
                    if !present || recorded.is_none_or(|r| r.secret != def.secret) {
                        reasons.push(Reason::MissingFile { file: name.clone() });
                    }
                }
                if meta.validation_hash != generator.validation_hash {
                    reasons.push(Reason::ValidationChanged);
                }
                definition_changed = meta.definition_hash != generator.definition_hash;
                let instance = &config.instances[&id];
                let current: BTreeSet<String> =
                    instance.dependency_ids().map(ToString::to_string).collect();
                let recorded: BTreeSet<String> = meta.dependencies.keys().cloned().collect();
                for dep in current.symmetric_difference(&recorded) {
                    reasons.push(Reason::DependencyChanged {
                        dependency: dep.clone(),
                    });
                }
                for dep in instance.dependency_ids() {
                    if regenerating.contains(dep) {
                        reasons.push(Reason::DependencyRegenerated {
                            dependency: dep.to_string(),
                        });
                    } else if let Some(rec) = meta.dependencies.get(&dep.to_string())
                        && generations.get(dep).cloned().flatten().as_ref() != Some(rec)
                    {
                        reasons.push(Reason::DependencyChanged {
                            dependency: dep.to_string(),
                        });
                    }
                }
                if let Some((vault, index)) = vault.zip(index.as_ref()) {
                    for (name, def) in generator.files.iter().filter(|(_, d)| d.secret) {
                        let want = recipients::recipients_for(config, &id, def, vault);
                        let have = meta
                            .files
                            .get(name)
                            .and_then(|f| f.recipients.clone())
                            .unwrap_or_default();
                        if want != have {
                            let want_set: BTreeSet<String> = want.iter().cloned().collect();
                            let have_set: BTreeSet<String> = have.into_iter().collect();
                            stale.push(StaleSecret {
                                file: name.clone(),
                                added: index.describe(
                                    &want_set.difference(&have_set).cloned().collect(),
                                    Some(&recipients::principals_for(config, &id, def)),
                                ),
                                removed: index.describe(
                                    &have_set.difference(&want_set).cloned().collect(),
                                    None,
                                ),
                                recipients: want,
                            });
                        }
                    }
                }
            }
        }
        if regenerate.contains(&id) {
            reasons.push(Reason::Requested);
        }
        reasons.dedup();
        let action = if !reasons.is_empty() {
            regenerating.insert(id.clone());
            Action::Generate { reasons }
        } else if !stale.is_empty() {
            Action::Rekey { secrets: stale }
        } else {
            Action::UpToDate
        };
        out.push(InstancePlan {
            instance: id.to_string(),
            id,
            action,
            definition_changed,
        });
    }
    if vault.is_none() && any_present {
        return Err(PlanError::VaultMissing {
            path: store.vault_pub_path(),
        });
    }
    Ok(Plan {
        create_vault: vault.is_none(),
        instances: out,
        metas: read,
    })
}
