//! `vars generate` as a library: a [`Request`] (what the person selected) becomes a
//! [`GeneratePlan`] ([`plan()`]: instances to generate and why, stale secrets to re-encrypt,
//! instances a `share` flip moved, manifests to rewrite, where each prompt value comes from,
//! whether the vault must be created or opened), which the CLI prints and [`apply`] carries out
//! (`apply.rs`: sandboxed runs wave by wave, encryption, atomic swaps, manifests).
//!
//! Regeneration rules (DESIGN §5, issue 10): everything a run (re)generates also regenerates
//! its dependents, transitively, on every machine and user ([`crate::plan`]);
//! `--machine M --regenerate` regenerates M's own instances, a shared instance only when it is
//! named; stored prompt values are reused.

mod apply;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub use apply::apply;

use crate::identity::IdentityError;
use crate::meta::Meta;
use crate::model::{Config, Dependency, InstanceId, Scope};
use crate::plan::{self, Action, Plan, PlanError};
use crate::prompt::{self, PromptError, PromptValues, Source};
use crate::rekey::RekeyError;
use crate::sandbox::{SandboxError, SandboxKind};
use crate::seal::SealError;
use crate::store::layout::PrincipalKind;
use crate::store::{Store, StoreError};
use crate::vault::{self, VaultError};

/// Errors planning or applying a generate. Each names the instance; none carries secret
/// content.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// `--machine`, `--user` or a generator named nothing declared.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Instances whose `meta.json` is damaged: they are not silently regenerated (which
    /// would rotate their secrets); `--regenerate` names them explicitly.
    #[error("damaged instance(s): {}", instances.iter().map(|(id, why)| format!("{id} ({why})")).collect::<Vec<_>>().join("; "))]
    Damaged {
        /// The damaged instances and what is wrong with each.
        instances: Vec<(InstanceId, String)>,
    },
    /// A vault rotation was interrupted; `rekey` must finish it first.
    #[error("a vault key rotation was interrupted")]
    RotationInterrupted,
    /// A generator script failed or its outputs were wrong.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Prompt values are missing or malformed.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// Stored prompt values need the vault, which could not be opened.
    #[error("the stored values of {} are reused, which needs the vault: {source}", prompts.join(", "))]
    StoredPrompts {
        /// `instance.prompt` of each stored value.
        prompts: Vec<String>,
        /// Why the vault could not be opened.
        source: Box<vault::OpenError>,
    },
    /// Finding identities.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The vault.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Opening the vault (keyring cache or identities).
    #[error(transparent)]
    Open(#[from] vault::OpenError),
    /// Encryption or decryption for `instance` failed.
    #[error("{instance}: {source}")]
    Seal {
        /// The instance.
        instance: InstanceId,
        /// The cause.
        source: SealError,
    },
    /// Re-encrypting stale secrets failed.
    #[error(transparent)]
    Rekey(#[from] RekeyError),
    /// Reading or writing the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Several instances failed in one wave.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<GenerateError>),
}

/// Errors resolving a [`Selection`].
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    /// `--machine` names no declared machine.
    #[error("unknown machine {name:?}")]
    UnknownMachine {
        /// The name given.
        name: String,
        /// Declared machines.
        known: Vec<String>,
    },
    /// `--user` names no declared user.
    #[error("unknown user {name:?}")]
    UnknownUser {
        /// The name given.
        name: String,
        /// Declared users.
        known: Vec<String>,
    },
    /// A generator name or instance path that names no declared instance.
    #[error("no instance of generator {name:?} is declared")]
    UnknownGenerator {
        /// The name given.
        name: String,
    },
}

/// What the person selected: `--machine`, `--user`, and generator names or instance paths
/// (`GEN`, `machines/m/GEN`, `shared/GEN`). Shared by generate, list, check and manifests.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--machine`, repeatable.
    pub machines: Vec<String>,
    /// `--user`, repeatable.
    pub users: Vec<String>,
    /// Generator names or instance paths; empty means all.
    pub items: Vec<String>,
}

/// A resolved [`Selection`].
#[derive(Debug, Clone, Default)]
pub struct Selected {
    /// Every instance selected: what the selected machines and users receive (their own
    /// instances, their users' and the shared ones they use), narrowed by the items.
    pub targets: BTreeSet<InstanceId>,
    /// What `--regenerate` regenerates: instances named by an item, else the selected
    /// machines' and users' own instances (never a shared one they merely use), else all.
    pub own: BTreeSet<InstanceId>,
}

impl Selection {
    /// The instances this selection names in `config`.
    pub fn resolve(&self, config: &Config) -> Result<Selected, SelectionError> {
        for m in &self.machines {
            if !config.machines.contains_key(m) {
                return Err(SelectionError::UnknownMachine {
                    name: m.clone(),
                    known: config.machines.keys().cloned().collect(),
                });
            }
        }
        for u in &self.users {
            if !config.users.contains_key(u) {
                return Err(SelectionError::UnknownUser {
                    name: u.clone(),
                    known: config.users.keys().cloned().collect(),
                });
            }
        }
        for item in &self.items {
            if !config
                .instances
                .keys()
                .any(|id| &id.generator == item || &id.to_string() == item)
            {
                return Err(SelectionError::UnknownGenerator { name: item.clone() });
            }
        }
        let everything = self.machines.is_empty() && self.users.is_empty();
        let in_scope = |id: &InstanceId| -> bool {
            everything
                || match &id.scope {
                    Scope::Machine(m) => self.machines.contains(m),
                    Scope::User(u) => {
                        self.users.contains(u)
                            || self
                                .machines
                                .iter()
                                .any(|m| config.machines[m].users.contains(u))
                    }
                    Scope::Shared => {
                        let inst = &config.instances[id];
                        inst.machines.iter().any(|m| self.machines.contains(m))
                            || inst.users.iter().any(|u| self.users.contains(u))
                    }
                }
        };
        let named = |id: &InstanceId| {
            self.items
                .iter()
                .any(|i| *i == id.generator || *i == id.to_string())
        };
        let targets: BTreeSet<InstanceId> = config
            .instances
            .keys()
            .filter(|id| in_scope(id) && (self.items.is_empty() || named(id)))
            .cloned()
            .collect();
        let own = targets
            .iter()
            .filter(|id| {
                !self.items.is_empty()
                    || everything
                    || match &id.scope {
                        Scope::Machine(m) => self.machines.contains(m),
                        Scope::User(u) => self.users.contains(u),
                        Scope::Shared => false,
                    }
            })
            .cloned()
            .collect();
        Ok(Selected { targets, own })
    }
}

/// What the person asked `vars generate` for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Which instances.
    pub selection: Selection,
    /// `--regenerate`: regenerate the selection's own instances even if current.
    pub regenerate: bool,
    /// `--trust-vault`: a changed `keys/vault.pub` the person confirmed.
    pub trust_vault: Option<String>,
}

/// Everything `vars generate` will do, computed before anything changes.
#[derive(Debug)]
pub struct GeneratePlan {
    /// The vault key does not exist yet and is created first.
    pub create_vault: bool,
    /// `keys/vault.pub`, when the store has a vault.
    pub vault: Option<String>,
    /// `keys/vault.pub` is not the vault this machine last saw for the store (DESIGN §4):
    /// applying must prove it by unwrapping `vault.age`, or the person confirms it.
    pub vault_changed: Option<VaultError>,
    /// The instances: the selection, what it depends on, and whatever depends on what is
    /// regenerated (with their reasons).
    pub plan: Plan,
    /// The instances that were selected (the rest of `plan` is there because of them).
    pub targets: BTreeSet<InstanceId>,
    /// The instances `--regenerate` named.
    pub regenerate: BTreeSet<InstanceId>,
    /// Instances of a generator whose `share` setting flipped, left in their old scope:
    /// removed once the generator's new instances exist (issue 10).
    pub moved: Vec<InstanceId>,
    /// Where each prompt of an instance to generate gets its value.
    pub prompts: Vec<(InstanceId, String, Source)>,
    /// Manifests out of date now (an interrupted run, or a change of owner or mode).
    pub manifests: Vec<(PrincipalKind, String)>,
    /// The `meta.json` of every declared instance that has a valid one.
    pub(crate) metas: BTreeMap<InstanceId, Meta>,
    /// What was asked for (a plan that creates a machine's generated recipient is applied in
    /// two steps, the second planned again once the recipient exists).
    pub(crate) request: Request,
}

impl GeneratePlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        !self.create_vault
            && self.plan.is_empty()
            && self.moved.is_empty()
            && self.manifests.is_empty()
    }

    /// Whether applying needs the unwrapped vault key: to decrypt dependency secrets, stored
    /// prompt values, or secrets to re-encrypt.
    pub fn needs_vault(&self, config: &Config) -> bool {
        self.plan.to_rekey().next().is_some()
            || self.prompts.iter().any(|(_, _, s)| *s == Source::Stored)
            || self.plan.to_generate().any(|p| {
                config.instances[&p.id]
                    .dependencies
                    .iter()
                    .any(|d| match d {
                        Dependency::One(dep) => {
                            config.generator(dep).files.values().any(|f| f.secret)
                        }
                        Dependency::EveryMachine { .. } => false,
                    })
            })
    }
}

/// Plan a generate (DESIGN §1: plan first, then print, then apply). Refuses a store with an
/// interrupted rotation or damaged instances that were not named for regeneration.
pub fn plan(
    config: &Config,
    store: &Store,
    request: &Request,
    given: &PromptValues,
) -> Result<GeneratePlan, GenerateError> {
    let selected = request.selection.resolve(config)?;
    let regenerate = if request.regenerate {
        selected.own.clone()
    } else {
        BTreeSet::new()
    };
    plan_for(config, store, request, selected.targets, regenerate, given)
}

/// [`plan`] for instance sets already resolved.
pub(crate) fn plan_for(
    config: &Config,
    store: &Store,
    request: &Request,
    targets: BTreeSet<InstanceId>,
    regenerate: BTreeSet<InstanceId>,
    given: &PromptValues,
) -> Result<GeneratePlan, GenerateError> {
    let state = vault::state(store)?;
    if state.next.is_some() {
        return Err(GenerateError::RotationInterrupted);
    }
    let mut plan = plan::plan(
        config,
        store,
        &targets,
        &regenerate,
        state.recipient.as_deref(),
    )?;
    let damaged: Vec<(InstanceId, String)> = plan
        .instances
        .iter()
        .filter(|p| !regenerate.contains(&p.id))
        .filter_map(|p| Some((p.id.clone(), p.action.damage()?.to_owned())))
        .collect();
    if !damaged.is_empty() {
        return Err(GenerateError::Damaged { instances: damaged });
    }
    // The other instances' metas, for the manifests: each meta.json is read once.
    let rest: Vec<InstanceId> = config
        .instances
        .keys()
        .filter(|id| !plan.metas.contains_key(*id) && plan.get(id).is_none())
        .cloned()
        .collect();
    plan.metas.extend(plan::read_metas(store, &rest)?);
    let generating: Vec<InstanceId> = plan.to_generate().map(|p| p.id.clone()).collect();
    let stored = |id: &InstanceId, prompt: &str| {
        plan.metas
            .get(id)
            .and_then(|m| m.files.get(prompt))
            .is_some_and(|f| f.secret)
    };
    let prompts = prompt::sources(config, given, &generating, stored);
    let moved = moved_instances(config, store, &plan)?;
    let manifests =
        crate::manifest::outdated(store, crate::manifest::build(config, store, &plan.metas))?
            .into_iter()
            .map(|m| (m.kind, m.name))
            .collect();
    let vault_changed = match &state.recipient {
        Some(r) => vault::check_pin(store, r, request.trust_vault.as_deref()).err(),
        None => None,
    };
    Ok(GeneratePlan {
        create_vault: state.recipient.is_none(),
        vault: state.recipient,
        vault_changed,
        metas: std::mem::take(&mut plan.metas),
        plan,
        targets,
        regenerate,
        moved,
        prompts,
        manifests,
        request: request.clone(),
    })
}

impl GeneratePlan {
    /// Instances this plan generates that hold a machine's generated recipient, and what they
    /// depend on that is generated too: they run first, so that everything else can be
    /// encrypted to the new key (issue 11: a new host in one deploy).
    pub(crate) fn recipient_sources(&self, config: &Config) -> BTreeSet<InstanceId> {
        let generating: BTreeSet<InstanceId> =
            self.plan.to_generate().map(|p| p.id.clone()).collect();
        let sources = generating.iter().filter(|id| match &id.scope {
            Scope::Machine(m) => config.machines[m]
                .generated
                .iter()
                .any(|g| g.generator == id.generator),
            _ => false,
        });
        config
            .dag
            .closure(sources.cloned())
            .into_iter()
            .filter(|id| generating.contains(id))
            .collect()
    }

    /// The part of this plan that generates `only`.
    pub(crate) fn restricted(&self, only: &BTreeSet<InstanceId>) -> GeneratePlan {
        GeneratePlan {
            create_vault: self.create_vault,
            vault: self.vault.clone(),
            vault_changed: None,
            plan: Plan {
                instances: self
                    .plan
                    .instances
                    .iter()
                    .filter(|p| only.contains(&p.id))
                    .cloned()
                    .collect(),
                metas: BTreeMap::new(),
            },
            targets: only.clone(),
            regenerate: self.regenerate.intersection(only).cloned().collect(),
            moved: Vec::new(),
            prompts: self
                .prompts
                .iter()
                .filter(|(id, _, _)| only.contains(id))
                .cloned()
                .collect(),
            manifests: Vec::new(),
            metas: self.metas.clone(),
            request: self.request.clone(),
        }
    }
}

/// Stored instances of a generator whose `share` setting no longer matches their scope,
/// once the generator's instances in the new scope exist or are generated now.
fn moved_instances(
    config: &Config,
    store: &Store,
    plan: &Plan,
) -> Result<Vec<InstanceId>, GenerateError> {
    let mut moved = Vec::new();
    for stored in store.instances()?.instances {
        let id = stored.id;
        if config.instances.contains_key(&id) {
            continue;
        }
        let Some(generator) = config.generators.get(&id.generator) else {
            continue;
        };
        let flipped = (id.scope == Scope::Shared) != generator.share;
        let replaced = config
            .instances
            .keys()
            .filter(|i| i.generator == id.generator)
            .any(|i| {
                plan.metas.contains_key(i)
                    || plan
                        .get(i)
                        .is_some_and(|p| matches!(p.action, Action::Generate { .. }))
            });
        if flipped && replaced {
            moved.push(id);
        }
    }
    Ok(moved)
}

/// A callback told about each finished instance (the CLI drives a progress bar with it).
pub type OnDone = Box<dyn Fn(&InstanceId) + Send + Sync>;

/// How to run.
pub struct Options<'a> {
    /// Parallel instances.
    pub jobs: usize,
    /// The sandbox to use.
    pub sandbox: SandboxKind,
    /// Prompt values given on the command line or in the environment.
    pub prompts: &'a PromptValues,
    /// Asks the person for the other values (`None` without a terminal).
    pub asker: Option<&'a dyn prompt::Asker>,
    /// `--identity` files.
    pub identity_files: Vec<PathBuf>,
    /// Called with each instance as it finishes.
    pub on_done: Option<OnDone>,
}

/// What was done.
#[derive(Debug, Default)]
pub struct Report {
    /// Instances generated.
    pub generated: Vec<InstanceId>,
    /// Instances whose secrets were re-encrypted.
    pub rekeyed: Vec<InstanceId>,
    /// Instances removed because their generator's `share` setting flipped.
    pub removed: Vec<InstanceId>,
    /// The vault was created.
    pub created_vault: bool,
    /// Manifests rewritten.
    pub manifests: Vec<(PrincipalKind, String)>,
}
