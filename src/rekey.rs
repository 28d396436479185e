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
//!
//! `Resealer` re-encrypts one instance and carries its other declared files as they are;
//! `generate` uses it too for the stale secrets of instances it does not regenerate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::crypto::{Identities, VaultKey};
use crate::manifest;
use crate::meta::{Manifest, Meta};
use crate::model::{Config, InstanceId, Scope};
use crate::plan::{self, Action, PlanError, StaleSecret};
use crate::recipients;
use crate::seal::{Opener, SealError, Sealer};
use crate::spec::Backend;
use crate::store::layout::PrincipalKind;
use crate::store::{StagedFile, Store, StoreError};
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
    /// Re-encrypting a secret of `instance` failed.
    #[error("{instance}: {source}")]
    Seal {
        /// The instance.
        instance: InstanceId,
        /// The cause.
        source: SealError,
    },
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
    /// `--backend`: the person says `settings.backend` changed to this; every secret stored
    /// by the other backend is converted.
    pub backend: Option<Backend>,
}

/// What happens to the vault key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum VaultAction {
    /// Nothing.
    Keep,
    /// Re-encrypt `vault.age` to the admins declared now (admins or their keys added).
    Rewrap {
        /// Admins who gain access (`alice`, `alice (new key)`).
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
    pub instances: Vec<(InstanceId, Vec<StaleSecret>)>,
    /// Declared instances that were never generated (`vars generate` creates them).
    pub missing: Vec<InstanceId>,
    /// For each `--remove-user`: the secrets that user could read (to regenerate).
    pub readable_by_removed: BTreeMap<String, Vec<String>>,
    /// Notes that scope the report to the flags given.
    pub notes: Vec<String>,
    /// Removed users whose `users/<u>/` directory is deleted from the store.
    pub remove_users: Vec<String>,
    /// Manifests to rewrite: out of date because vars.yaml changed, or because an earlier
    /// rekey was interrupted before writing them.
    pub manifests: Vec<(PrincipalKind, String)>,
    /// The vault key being rotated in (its recipient is what `instances` were planned for).
    #[serde(skip)]
    next: Option<PlannedNext>,
    /// The meta.json files read while planning, reused when staging.
    #[serde(skip)]
    metas: BTreeMap<InstanceId, Meta>,
    /// The content of `manifests`. Re-encryption changes nothing a manifest records, so they
    /// are built from the metas read while planning.
    #[serde(skip)]
    outdated_manifests: Vec<Manifest>,
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
            && self.remove_users.is_empty()
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
    if let Some(b) = intent.backend
        && b != config.backend
    {
        return intent_err(format!(
            "--backend {b}: settings.backend in vars.yaml is {}; set `backend: {b}` under settings: first",
            config.backend
        ));
    }
    let state = vault::state(store)?;
    let current = state
        .recipient
        .clone()
        .ok_or_else(|| PlanError::VaultMissing {
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
    if state.next.is_some() {
        rotate_reasons.push("an earlier rotation was interrupted".into());
    }
    if recorded.is_none() {
        // Who vault.age is wrapped to is unknown: only a new vault key is safe.
        rotate_reasons.push("keys/vault.json is missing".into());
    }
    let next = if rotate_reasons.is_empty() {
        None
    } else {
        Some(match state.next {
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
    let all: BTreeSet<InstanceId> = config.instances.keys().cloned().collect();
    let mut full = plan::plan(config, store, &all, &BTreeSet::new(), Some(&target))?;
    let metas = std::mem::take(&mut full.metas);
    let mut instances = Vec::new();
    let mut missing = Vec::new();
    for p in full.instances {
        match p.action {
            Action::Rekey { secrets } => instances.push((p.id, secrets)),
            Action::Generate { .. } => missing.push(p.id),
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
        if missing.iter().any(|i| i.scope == Scope::User(u.to_owned())) {
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
    let converting = instances
        .iter()
        .flat_map(|(_, s)| s)
        .filter(|s| s.convert_from.is_some())
        .count();
    if let Some(b) = intent.backend {
        notes.push(if converting == 0 {
            format!("every secret is already stored by the {b} backend")
        } else {
            format!(
                "{converting} secret(s) are converted to the {b} backend, instance by instance (an interrupted run is finished by running it again)"
            )
        });
    }
    let mut readable_by_removed = BTreeMap::new();
    let mut remove_users = Vec::new();
    for u in &intent.remove_users {
        let mut list = Vec::new();
        if recorded.as_ref().is_some_and(|r| r.admins.contains_key(u)) {
            list.push("every secret (through the vault key, which is rotated now)".to_owned());
        }
        let theirs = store.instances_of(&Scope::User(u.clone()))?;
        list.extend(readable_by(
            config,
            store,
            &metas,
            &theirs,
            &format!("user:{u}"),
        )?);
        readable_by_removed.insert(u.clone(), list);
        if !theirs.is_empty() {
            remove_users.push(u.clone());
        }
    }
    let outdated_manifests = manifest::outdated(store, manifest::build(config, store, &metas))?;
    let manifests = outdated_manifests
        .iter()
        .map(|m| (m.kind, m.name.clone()))
        .collect();
    Ok(RekeyPlan {
        vault,
        instances,
        missing,
        readable_by_removed,
        notes,
        remove_users,
        manifests,
        next,
        metas,
        outdated_manifests,
    })
}

/// The secrets whose meta.json names `label` among their readers: of the declared instances
/// (already read) and of `extra` ones no longer declared (a removed user's own).
fn readable_by(
    config: &Config,
    store: &Store,
    metas: &BTreeMap<InstanceId, Meta>,
    extra: &[InstanceId],
    label: &str,
) -> Result<Vec<String>, RekeyError> {
    let mut out = Vec::new();
    let mut read_now = BTreeMap::new();
    for id in extra
        .iter()
        .filter(|id| !config.instances.contains_key(*id))
    {
        if let Ok(Some(m)) = store.read_meta(id) {
            read_now.insert(id.clone(), m);
        }
    }
    let mut all: Vec<(&InstanceId, &Meta)> = metas.iter().chain(read_now.iter()).collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    for (id, m) in all {
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
    pub vault: Option<&'static str>,
}

/// Apply a plan. The vault is opened from the keyring cache (`vars unlock`) or with the admin's
/// identities from `identity_files` and the default places. The caller holds the store lock.
pub fn apply(
    config: &Config,
    store: &Store,
    plan: &RekeyPlan,
    identity_files: &[PathBuf],
    jobs: usize,
) -> Result<RekeyReport, RekeyError> {
    let mut report = RekeyReport::default();
    let old = vault::open(store, identity_files)?;
    // keys/vault.json says who holds the vault; it is believed only when the vault key
    // authenticates it (anyone can edit it, or plant a rotation's next.*).
    if vault::verify_record(store, &old)? == vault::RecordCheck::Unverified
        && !matches!(plan.vault, VaultAction::Rotate { .. })
    {
        return Err(VaultError::UnverifiedRecord {
            path: store.key_path(crate::store::KeyFile::VaultJson),
        }
        .into());
    }
    let next = match &plan.next {
        None => None,
        Some(PlannedNext::Resumed(_)) => Some(vault::unwrap_next(
            store,
            &old,
            &load_identities(identity_files)?,
        )?),
        Some(PlannedNext::Fresh(key)) => {
            // A fresh key: store it beside the old one before any secret is encrypted to it.
            vault::write_keys(config, store, &old, Some(key))?;
            Some(VaultKey::from_secret(&key.to_secret()).map_err(VaultError::from)?)
        }
    };
    let target = next.as_ref().unwrap_or(&old).recipient();
    let sealer = Sealer::new(config, &target).map_err(|source| RekeyError::Seal {
        instance: InstanceId {
            scope: Scope::Shared,
            generator: "keys".into(),
        },
        source,
    })?;
    let old_opener = Opener::vault(&old);
    let next_opener = next.as_ref().map(Opener::vault);
    let resealer = Resealer {
        config,
        store,
        sealer: &sealer,
        vault: &old_opener,
        next: next_opener.as_ref(),
    };
    let instances: Vec<&InstanceId> = plan.instances.iter().map(|(id, _)| id).collect();
    // Every instance is swapped in atomically (DESIGN §3), in a few rounds with batched syncs:
    // thousands of per-file fsyncs would dominate a rekey of a large fleet.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
        .expect("a thread pool can be built");
    pool.install(|| {
        store.swap_many(&instances, |id| {
            let meta = plan.metas.get(*id).ok_or_else(|| StoreError::BadMeta {
                path: store.instance_dir(id).join("meta.json"),
                reason: "it disappeared while vars was running".into(),
            })?;
            let (rel, files, _) = resealer.restage(id, meta)?;
            Ok::<_, RekeyError>((rel, files))
        })
    })?;
    report.instances = instances.len();
    for u in &plan.remove_users {
        store.remove_dir(&Path::new(crate::store::layout::USERS_DIR).join(u))?;
    }
    match (&plan.vault, &next) {
        (_, Some(n)) => {
            vault::write_keys(config, store, n, None)?;
            report.vault = Some("rotated");
        }
        (VaultAction::Rewrap { .. }, None) => {
            vault::write_keys(config, store, &old, None)?;
            report.vault = Some("re-wrapped");
        }
        _ => {}
    }
    for m in &plan.outdated_manifests {
        store.write_manifest(m)?;
    }
    Ok(report)
}

fn load_identities(identity_files: &[PathBuf]) -> Result<Identities, RekeyError> {
    crate::identity::load(identity_files).map_err(|e| RekeyError::Open(e.into()))
}

/// Re-encrypts the stale secrets of an instance and carries its other declared files as they
/// are. Only files both declared and recorded are carried: nothing else in the directory (a
/// planted link, a stray file) survives a rekey (issue 8).
pub(crate) struct Resealer<'a> {
    pub(crate) config: &'a Config,
    pub(crate) store: &'a Store,
    /// Encrypts to the vault secrets end up with (the new one during a rotation).
    pub(crate) sealer: &'a Sealer<'a>,
    /// Decrypts what is encrypted to the current vault.
    pub(crate) vault: &'a Opener,
    /// During a rotation: decrypts what is already encrypted to the vault being rotated in.
    pub(crate) next: Option<&'a Opener>,
}

impl Resealer<'_> {
    /// The new content of `id`'s directory (its path relative to the store, the files, and
    /// the new `meta.json` it contains), given its current `meta`.
    pub(crate) fn restage(
        &self,
        id: &InstanceId,
        meta: &Meta,
    ) -> Result<(PathBuf, Vec<StagedFile>, Meta), RekeyError> {
        let generator = self.config.generator(id);
        let mut meta = meta.clone();
        meta.files.retain(|name, f| {
            generator
                .files
                .get(name)
                .is_some_and(|def| def.secret == f.secret)
        });
        let seal_err = |source| RekeyError::Seal {
            instance: id.clone(),
            source,
        };
        let mut staged = Vec::with_capacity(meta.files.len() + 1);
        for (name, entry) in meta.files.iter_mut() {
            let def = &generator.files[name];
            let missing = || StoreError::BadMeta {
                path: self.store.file_path(id, name, def.secret),
                reason: "a file meta.json lists is missing".into(),
            };
            // A secret may still be stored by the other backend (a conversion under way).
            let (backend, raw) = if def.secret {
                self.store.read_secret(id, name)?.ok_or_else(missing)?
            } else {
                let raw = self.store.read_file(id, name, false)?.ok_or_else(missing)?;
                (self.store.backend(), raw)
            };
            let bytes = if !def.secret {
                raw
            } else {
                let want = recipients::recipients_for(self.config, id, def, self.sealer.vault());
                entry.deploy = def.deploy;
                if entry.recipients.as_ref() == Some(&want) && backend == self.store.backend() {
                    raw
                } else {
                    // During a rotation, try first the vault the file is recorded to be
                    // encrypted to: each identity tried costs a scalar multiplication.
                    let recorded = entry.recipients.as_deref().unwrap_or_default();
                    let opener = match self
                        .next
                        .filter(|_| recorded.iter().any(|r| r == self.sealer.vault()))
                    {
                        Some(next) => next,
                        None => self.vault,
                    };
                    // Bound to where it is: a ciphertext copied here from another instance is
                    // refused, never re-encrypted to this instance's readers.
                    let location = format!("{id}/{name}");
                    let plain = opener.open_at(&raw, &[&location]).map_err(seal_err)?;
                    let ct = self
                        .sealer
                        .seal(&plain, &want, &location)
                        .map_err(seal_err)?;
                    entry.recipients = Some(want);
                    entry.readers = Some(recipients::reader_labels(self.config, id, def));
                    ct
                }
            };
            staged.push(StagedFile {
                name: self.store.stored_name(name, def.secret),
                bytes,
            });
        }
        staged.push(StagedFile {
            name: crate::store::layout::META_FILE.into(),
            bytes: crate::meta::to_json(&meta),
        });
        Ok((id.rel_path(), staged, meta))
    }
}
