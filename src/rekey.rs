//! `vars rekey` (DESIGN §4): re-encrypt exactly the secrets whose declared recipients differ
//! from those recorded in `meta.json`, re-wrap `keys/vault.age` when admins were added, and
//! rotate the vault key when an admin was removed (or on request). The intent flags
//! (`--add-user`, `--add-machine`, `--remove-user`) are checked against `vars.yaml` and scope
//! the report; what is re-encrypted is always "everything stale, nothing else".
//!
//! A rotation is crash-safe: the new key is first stored beside the old one (`keys/next.*`),
//! then every secret is re-encrypted instance by instance, then `keys/` is swapped to the new
//! key alone. At every moment each secret decrypts with `vault.age` or `next.age`, and a
//! re-run finishes the job.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::{Identities, VaultKey};
use crate::dag::Dag;
use crate::generate::{self, Ctx, GenerateError};
use crate::manifest;
use crate::model::{Config, InstanceId};
use crate::plan::{self, Action, PlanError, StaleSecret};
use crate::store::{Store, StoreError};
use crate::vault::{self, VaultError};

/// Errors planning or applying a rekey.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    /// A flag contradicts vars.yaml.
    #[error("{message}")]
    Intent {
        /// What is wrong and what to change in vars.yaml.
        message: String,
    },
    /// Planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The vault.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Opening the vault (keyring cache or identities).
    #[error(transparent)]
    Open(#[from] vault::OpenError),
    /// Re-encryption failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the person says happened.
#[derive(Debug, Default, Clone)]
pub struct Intent {
    /// `--add-user`.
    pub add_users: Vec<String>,
    /// `--add-machine`.
    pub add_machines: Vec<String>,
    /// `--remove-user`.
    pub remove_users: Vec<String>,
    /// `--rotate-vault`.
    pub rotate_vault: bool,
}

/// What happens to the vault key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum VaultAction {
    /// Nothing.
    Keep,
    /// Re-encrypt `vault.age` to the admins declared now (admins or their keys added).
    Rewrap {
        /// Admins who gain access.
        added: Vec<String>,
    },
    /// New vault key; every secret re-encrypted.
    Rotate {
        /// Why.
        reasons: Vec<String>,
    },
}

/// The rekey plan.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RekeyPlan {
    /// The vault key.
    pub vault: VaultAction,
    /// Instances with stale secrets, in dependency order.
    pub instances: Vec<(String, Vec<StaleSecret>)>,
    /// Declared instances that were never generated (`vars generate` creates them).
    pub missing: Vec<String>,
    /// For each `--remove-user`: the secrets that user could read (to regenerate).
    pub readable_by_removed: BTreeMap<String, Vec<String>>,
    /// Notes that scope the report to the flags given.
    pub notes: Vec<String>,
    /// Directories of removed users (`users/<u>`), deleted from the store.
    pub remove_dirs: Vec<String>,
    /// Manifests to rewrite (`machines/m/manifest.json`): out of date because vars.yaml
    /// changed, or because an earlier rekey was interrupted before writing them.
    pub manifests: Vec<String>,
    /// The vault key being rotated in (its recipient is what `instances` were planned for).
    #[serde(skip)]
    next: Option<PlannedNext>,
    /// The meta.json files read while planning, reused when staging.
    #[serde(skip)]
    metas: BTreeMap<InstanceId, crate::meta::Meta>,
    /// The content of `manifests`. Re-encryption changes nothing a manifest records, so they
    /// are built from the metas read while planning.
    #[serde(skip)]
    outdated_manifests: Vec<crate::meta::Manifest>,
}

impl std::fmt::Debug for PlannedNext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlannedNext::Fresh(k) => write!(f, "Fresh({})", k.recipient()),
            PlannedNext::Resumed(r) => write!(f, "Resumed({r})"),
        }
    }
}

enum PlannedNext {
    /// A fresh key, not written anywhere yet.
    Fresh(VaultKey),
    /// `keys/next.pub` of an interrupted rotation.
    Resumed(String),
}

impl RekeyPlan {
    /// Whether anything is stale.
    pub fn is_empty(&self) -> bool {
        self.vault == VaultAction::Keep
            && self.instances.is_empty()
            && self.remove_dirs.is_empty()
            && self.manifests.is_empty()
    }

    /// Number of secret files to re-encrypt.
    pub fn secret_count(&self) -> usize {
        self.instances.iter().map(|(_, s)| s.len()).sum()
    }
}

/// Check the intent flags against vars.yaml and the store, then plan.
pub fn plan(config: &Config, store: &Store, intent: &Intent) -> Result<RekeyPlan, RekeyError> {
    let intent_err = |message: String| Err(RekeyError::Intent { message });
    for u in &intent.add_users {
        if !config.users.contains_key(u) {
            return intent_err(format!(
                "--add-user {u}: user {u:?} is not declared in vars.yaml; add it under users: with its recipients first"
            ));
        }
    }
    for m in &intent.add_machines {
        if !config.machines.contains_key(m) {
            return intent_err(format!(
                "--add-machine {m}: machine {m:?} is not declared in vars.yaml; add it under machines: with its host key first"
            ));
        }
    }
    for u in &intent.remove_users {
        if config.users.contains_key(u) {
            return intent_err(format!(
                "--remove-user {u}: user {u:?} is still declared in vars.yaml; remove it from users: (and from admins: and every machine's users:) first"
            ));
        }
    }
    let current = vault::vault_recipient(store)?.ok_or_else(|| PlanError::VaultMissing {
        path: store.vault_pub_path(),
    })?;
    let recorded = vault::recorded_admins(store)?;
    let declared = vault::declared_admins(config);

    let mut rotate_reasons = Vec::new();
    let mut added_admins = Vec::new();
    if let Some(rec) = &recorded {
        for (admin, recipients) in &rec.admins {
            match declared.get(admin) {
                None => rotate_reasons.push(format!("admin {admin} was removed")),
                Some(now) if recipients.iter().any(|r| !now.contains(r)) => {
                    rotate_reasons.push(format!("a key of admin {admin} was removed"))
                }
                Some(now) if now.iter().any(|r| !recipients.contains(r)) => {
                    added_admins.push(format!("{admin} (new key)"))
                }
                Some(_) => {}
            }
        }
        for admin in declared.keys().filter(|a| !rec.admins.contains_key(*a)) {
            added_admins.push(admin.clone());
        }
    }
    if intent.rotate_vault {
        rotate_reasons.push("--rotate-vault".into());
    }
    let resumed = vault::next_recipient(store)?;
    if resumed.is_some() {
        rotate_reasons.push("an earlier rotation was interrupted".into());
    }
    let next = if rotate_reasons.is_empty() {
        None
    } else {
        Some(match resumed {
            Some(r) => PlannedNext::Resumed(r),
            None => PlannedNext::Fresh(VaultKey::generate()),
        })
    };
    // Plan every instance against the vault recipient secrets will be encrypted to.
    let target = match &next {
        Some(PlannedNext::Fresh(k)) => k.recipient(),
        Some(PlannedNext::Resumed(r)) => r.clone(),
        None => current.clone(),
    };
    let dag = Dag::from_config(config);
    let all: BTreeSet<InstanceId> = config.instances.keys().cloned().collect();
    let mut full = plan::plan(config, store, &dag, &all, &BTreeSet::new(), Some(&target))?;
    let metas = std::mem::take(&mut full.metas);
    let mut instances = Vec::new();
    let mut missing = Vec::new();
    for p in full.instances {
        match p.action {
            Action::Rekey { secrets } => instances.push((p.instance, secrets)),
            Action::Generate { .. } => missing.push(p.instance),
            Action::UpToDate => {}
        }
    }
    let vault = if !rotate_reasons.is_empty() {
        VaultAction::Rotate {
            reasons: rotate_reasons,
        }
    } else if !added_admins.is_empty() || recorded.is_none() {
        VaultAction::Rewrap {
            added: added_admins,
        }
    } else {
        VaultAction::Keep
    };

    let mut notes = Vec::new();
    for u in &intent.add_users {
        if declared.contains_key(u) {
            notes.push(format!(
                "{u} is an admin: they read everything through the vault key"
            ));
        }
        let theirs: Vec<&String> = missing
            .iter()
            .filter(|i| i.starts_with(&format!("users/{u}/")))
            .collect();
        if !theirs.is_empty() {
            notes.push(format!(
                "{u}'s own instances are not generated yet: run vars generate --user {u}"
            ));
        }
    }
    for m in &intent.add_machines {
        notes.push(format!(
            "machine {m}'s own instances are created by: vars generate --machine {m}"
        ));
    }
    let mut readable_by_removed = BTreeMap::new();
    let mut remove_dirs = Vec::new();
    for u in &intent.remove_users {
        let mut list = Vec::new();
        if recorded.as_ref().is_some_and(|r| r.admins.contains_key(u)) {
            list.push("every secret (through the vault key, which is rotated now)".to_owned());
        }
        list.extend(readable_by(config, store, &format!("user:{u}"))?);
        readable_by_removed.insert(u.clone(), list);
        if store.dir.join("users").join(u).is_dir() {
            remove_dirs.push(format!("users/{u}"));
        }
    }
    let outdated_manifests = manifest::outdated_among(store, manifest::build_from(config, &metas))?;
    let manifests = outdated_manifests
        .iter()
        .map(|m| {
            let path = store.manifest_path(&m.kind, &m.name);
            path.strip_prefix(&store.dir)
                .unwrap_or(&path)
                .display()
                .to_string()
        })
        .collect();
    // Rotation re-encrypts everything anyway; a rewrap alone touches no instance.
    Ok(RekeyPlan {
        vault,
        instances,
        missing,
        readable_by_removed,
        notes,
        remove_dirs,
        manifests,
        next,
        metas,
        outdated_manifests,
    })
}

/// The secrets whose meta.json names `label` among their readers.
fn readable_by(config: &Config, store: &Store, label: &str) -> Result<Vec<String>, RekeyError> {
    let mut out = Vec::new();
    let mut dirs: Vec<InstanceId> = config.instances.keys().cloned().collect();
    // A removed user's own instances are no longer declared; find them on disk.
    if let Some(user) = label.strip_prefix("user:")
        && let Ok(rd) = std::fs::read_dir(store.dir.join("users").join(user))
    {
        for e in rd.flatten() {
            if e.path().is_dir() {
                dirs.push(InstanceId {
                    scope: crate::model::Scope::User(user.to_owned()),
                    generator: e.file_name().to_string_lossy().into_owned(),
                });
            }
        }
    }
    dirs.sort();
    dirs.dedup();
    for id in dirs {
        let Ok(Some(m)) = store.read_meta(&id) else {
            continue;
        };
        for (file, f) in &m.files {
            if f.readers
                .as_ref()
                .is_some_and(|r| r.iter().any(|x| x == label))
            {
                out.push(format!("{id}/{file}"));
            }
        }
    }
    Ok(out)
}

/// What was done.
#[derive(Debug, Default)]
pub struct RekeyReport {
    /// Instances re-encrypted.
    pub instances: usize,
    /// The vault was re-wrapped or rotated.
    pub vault: Option<String>,
}

/// Apply a plan. The vault is opened from the keyring cache (`vars unlock`) or with the admin's
/// identities from `identity_files` and the default places. The caller holds
/// the store lock.
pub fn apply(
    config: &Config,
    store: &Store,
    plan: &RekeyPlan,
    identity_files: &[std::path::PathBuf],
    jobs: usize,
) -> Result<RekeyReport, RekeyError> {
    let mut report = RekeyReport::default();
    let old = vault::open(store, identity_files)?;
    let mut vault_ids = Identities::default();
    vault_ids.add_vault(&old);
    let next = match &plan.next {
        None => None,
        Some(PlannedNext::Resumed(_)) => Some(vault::unwrap_next(
            store,
            &crate::identity::load(identity_files).map_err(vault::OpenError::from)?,
        )?),
        Some(PlannedNext::Fresh(key)) => {
            // A fresh key: store it beside the old one before any secret is encrypted to it.
            vault::write_keys(config, store, &old, Some(key))?;
            Some(VaultKey::from_secret(&key.to_secret()).map_err(VaultError::from)?)
        }
    };
    let next_ids = next.as_ref().map(|n| {
        let mut ids = Identities::default();
        ids.add_vault(n);
        ids
    });
    let target = next.as_ref().unwrap_or(&old).recipient();
    let wanted: BTreeSet<&str> = plan.instances.iter().map(|(i, _)| i.as_str()).collect();
    let instances: Vec<InstanceId> = config
        .instances
        .keys()
        .filter(|id| wanted.contains(id.to_string().as_str()))
        .cloned()
        .collect();
    let parsed = generate::parse_recipients(config, &target)?;
    let ctx = Ctx {
        config,
        store,
        vault_ids: &vault_ids,
        next_ids: next_ids.as_ref(),
        vault: &target,
        parsed: &parsed,
        armor: config.armor,
    };
    // Every instance is swapped in atomically (DESIGN §3), in a few rounds with batched syncs:
    // thousands of per-file fsyncs would dominate a rekey of a large fleet.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .expect("a thread pool can be built");
    pool.install(|| store.swap_many(&instances, |id| ctx.stage_rekey(id, plan.metas.get(id))))?;
    report.instances = instances.len();
    for dir in &plan.remove_dirs {
        store.remove_dir(&store.dir.join(dir))?;
    }
    match (&plan.vault, &next) {
        (_, Some(n)) => {
            vault::write_keys(config, store, n, None)?;
            report.vault = Some("rotated".into());
        }
        (VaultAction::Rewrap { .. }, None) => {
            vault::write_keys(config, store, &old, None)?;
            report.vault = Some("re-wrapped".into());
        }
        _ => {}
    }
    for m in &plan.outdated_manifests {
        store.write_manifest(m)?;
    }
    Ok(report)
}
