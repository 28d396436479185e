//! Carrying out a [`GeneratePlan`]: create or open the vault, collect prompt values, run each
//! instance in the sandbox wave by wave (independent instances in parallel), verify, seal the
//! secrets, swap each instance into the store atomically, re-encrypt stale secrets, remove
//! instances a `share` flip moved, and rewrite the manifests from the metas now in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use rayon::prelude::*;

use super::{GenerateError, GeneratePlan, Options, Report};
use crate::crypto::VaultKey;
use crate::meta::{self, META_FORMAT, Meta, MetaFile};
use crate::model::{Config, Dependency, InstanceId, Scope};
use crate::prompt::{self, PromptError, Source};
use crate::recipients;
use crate::rekey::Resealer;
use crate::sandbox::{self, InputFile, Job};
use crate::seal::{Opener, SealError, Sealer};
use crate::secret::SecretBytes;
use crate::store::{StagedFile, Store, StoreError};
use crate::vault;

/// Apply `plan`. The caller holds the store lock. When the plan creates a machine's
/// `{ generated: … }` recipient, that instance runs first; then `config` learns the new
/// recipient, the rest is planned again and applied, encrypted to it.
pub fn apply(
    config: &mut Config,
    store: &Store,
    plan: GeneratePlan,
    opts: &Options<'_>,
) -> Result<Report, GenerateError> {
    let sources = plan.recipient_sources(config);
    if sources.is_empty() {
        return apply_once(config, store, plan, opts);
    }
    let mut report = apply_once(config, store, plan.restricted(&sources), opts)?;
    config
        .resolve_generated(store, crate::model::Pinning::Checked { fresh: &sources })
        .map_err(|e| StoreError::BadMeta {
            path: store.dir.clone(),
            reason: e.to_string(),
        })?;
    // Everything the machines with a new key read is planned again (their secrets are stale
    // now); what ran already is not regenerated again.
    let machines: BTreeSet<&String> = sources
        .iter()
        .filter_map(|id| match &id.scope {
            Scope::Machine(m) => Some(m),
            _ => None,
        })
        .collect();
    let affected = config.instances.keys().filter(|id| {
        recipients::readers(config, id)
            .iter()
            .any(|p| matches!(p, recipients::Principal::Machine(m) if machines.contains(m)))
    });
    let targets: BTreeSet<InstanceId> = plan.targets.iter().chain(affected).cloned().collect();
    let regenerate = plan.regenerate.difference(&sources).cloned().collect();
    let rest = super::plan_for(
        config,
        store,
        &plan.request,
        targets,
        regenerate,
        opts.prompts,
    )?;
    let more = apply_once(config, store, rest, opts)?;
    report.generated.extend(more.generated);
    report.rekeyed.extend(more.rekeyed);
    report.removed.extend(more.removed);
    report.manifests.extend(more.manifests);
    report.manifests.sort();
    report.manifests.dedup();
    Ok(report)
}

fn apply_once(
    config: &Config,
    store: &Store,
    plan: GeneratePlan,
    opts: &Options<'_>,
) -> Result<Report, GenerateError> {
    let mut report = Report::default();
    let to_generate: Vec<InstanceId> = plan.plan.to_generate().map(|p| p.id.clone()).collect();
    // A missing prompt value fails before anything runs or any identity is asked for.
    let unanswerable: Vec<String> = plan
        .prompts
        .iter()
        .filter(|(_, _, s)| *s == Source::Ask && opts.asker.is_none())
        .map(|(id, name, _)| format!("{id}.{name}"))
        .collect();
    if !unanswerable.is_empty() {
        return Err(PromptError::Missing {
            missing: unanswerable,
        }
        .into());
    }

    // The vault key itself is needed only to decrypt (dependency secrets, stored prompt values,
    // re-encryption); otherwise its public half in keys/vault.pub is enough and no identity is
    // asked for, but that public half must be the one this machine knows (DESIGN §4).
    let vault: Option<VaultKey> = if plan.create_vault {
        report.created_vault = true;
        Some(vault::create_vault(config, store)?)
    } else if plan.needs_vault(config) {
        // Unwrapping proves keys/vault.pub (it must match vault.age); if it cannot be
        // unwrapped and vault.pub changed, the change is what to report.
        let recipient = plan.vault.as_deref().expect("a store with a vault");
        match vault::open_for(store, recipient, &opts.identity_files) {
            Ok(v) => Some(v),
            // A vault.age that does not match vault.pub is proof of tampering: say so. Any
            // other failure to unwrap proves nothing, so a changed vault.pub is what to report.
            Err(e @ vault::OpenError::Vault(vault::VaultError::Mismatch { .. })) => {
                return Err(e.into());
            }
            Err(e) => {
                if let Some(changed) = plan.vault_changed {
                    return Err(changed.into());
                }
                return Err(stored_prompts_error(&plan, e));
            }
        }
    } else {
        if let Some(changed) = plan.vault_changed {
            return Err(changed.into());
        }
        None
    };
    let vault_recipient = match &vault {
        Some(v) => v.recipient(),
        None => plan
            .vault
            .clone()
            .expect("a store without a vault creates one"),
    };
    let opener = vault.as_ref().map(Opener::vault);

    let mut read_stored = |id: &InstanceId, name: &str| -> Result<SecretBytes, PromptError> {
        let open = || -> Result<SecretBytes, GenerateError> {
            let opener = opener
                .as_ref()
                .expect("stored prompt values open the vault");
            let raw = store
                .read_file(id, name, true)?
                .ok_or_else(|| StoreError::BadMeta {
                    path: store.file_path(id, name, true),
                    reason: "the stored prompt value is missing".into(),
                })?;
            opener
                .open_at(&raw, &[&format!("{id}/{name}")])
                .map_err(|source| GenerateError::Seal {
                    instance: id.clone(),
                    source,
                })
        };
        open().map_err(|e| PromptError::BadArgument {
            what: format!("{id}.{name}"),
            reason: format!("the stored value cannot be read: {e}"),
        })
    };
    let mut prompt_values = prompt::collect(
        config,
        opts.prompts,
        &plan.prompts,
        opts.asker,
        &mut read_stored,
    )?;

    let sealer = Sealer::new(config, &vault_recipient).map_err(|source| GenerateError::Seal {
        instance: InstanceId {
            scope: Scope::Shared,
            generator: "keys".into(),
        },
        source,
    })?;
    let run = Run {
        config,
        store,
        sealer: &sealer,
        opener: opener.as_ref(),
        metas: Mutex::new(plan.metas),
    };

    let generate_set: BTreeSet<InstanceId> = to_generate.iter().cloned().collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .expect("a thread pool can be built");
    let waves = config
        .dag
        .waves(&generate_set)
        .expect("the model's graph has no cycle");
    for wave in waves {
        let jobs: Vec<(InstanceId, Vec<(String, SecretBytes)>)> = wave
            .into_iter()
            .map(|id| {
                let p = prompt_values.remove(&id).unwrap_or_default();
                (id, p)
            })
            .collect();
        let results: Vec<Result<InstanceId, GenerateError>> = pool.install(|| {
            jobs.into_par_iter()
                .map(|(id, prompts)| {
                    let r = run.generate(&id, prompts, &opts.sandbox).map(|()| id);
                    if let (Ok(done), Some(f)) = (&r, &opts.on_done) {
                        f(done);
                    }
                    r
                })
                .collect()
        });
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(done) => report.generated.push(done),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            // What was generated stays: its manifests name it (and nothing that failed).
            report.manifests = run.write_manifests()?;
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                GenerateError::Many(errors)
            });
        }
    }

    let rekeys: Vec<&InstanceId> = plan.plan.to_rekey().map(|p| &p.id).collect();
    if !rekeys.is_empty() {
        let vault_opener = opener.as_ref().expect("re-encryption opens the vault");
        let resealer = Resealer {
            config,
            store,
            sealer: &sealer,
            vault: vault_opener,
            next: None,
        };
        pool.install(|| {
            store.swap_many(&rekeys, |id| -> Result<_, GenerateError> {
                let meta = run.meta(id).ok_or_else(|| StoreError::BadMeta {
                    path: store.instance_dir(id).join(crate::store::layout::META_FILE),
                    reason: "it disappeared while vars was running".into(),
                })?;
                let (rel, files, meta) = resealer.restage(id, &meta)?;
                run.record(id, meta);
                Ok((rel, files))
            })
        })?;
        report.rekeyed.extend(rekeys.into_iter().cloned());
    }
    for id in &plan.moved {
        store.remove_dir(&id.rel_path())?;
        report.removed.push(id.clone());
    }
    report.manifests = run.write_manifests()?;
    Ok(report)
}

/// An open-vault failure, explained when it was the stored prompt values that needed it.
fn stored_prompts_error(plan: &GeneratePlan, e: vault::OpenError) -> GenerateError {
    let stored: Vec<String> = plan
        .prompts
        .iter()
        .filter(|(_, _, s)| *s == Source::Stored)
        .map(|(id, name, _)| format!("{id}.{name}"))
        .collect();
    if stored.is_empty() {
        e.into()
    } else {
        GenerateError::StoredPrompts {
            prompts: stored,
            source: Box::new(e),
        }
    }
}

/// One run's shared state: what instances need to be generated and re-encrypted.
struct Run<'a> {
    config: &'a Config,
    store: &'a Store,
    sealer: &'a Sealer<'a>,
    /// The vault key, when it was opened (to decrypt dependency secrets).
    opener: Option<&'a Opener>,
    /// Every declared instance's `meta.json` as it is now in the store: read by the plan,
    /// updated as instances are generated and re-encrypted.
    metas: Mutex<BTreeMap<InstanceId, Meta>>,
}

impl Run<'_> {
    fn meta(&self, id: &InstanceId) -> Option<Meta> {
        self.metas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    fn record(&self, id: &InstanceId, meta: Meta) {
        self.metas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), meta);
    }

    fn seal_err(id: &InstanceId) -> impl Fn(SealError) -> GenerateError + '_ {
        move |source| GenerateError::Seal {
            instance: id.clone(),
            source,
        }
    }

    /// The `$in` files of an instance, dependency secrets decrypted with the vault, and the
    /// generation id of each dependency.
    fn inputs(
        &self,
        id: &InstanceId,
    ) -> Result<(Vec<InputFile>, BTreeMap<String, String>), GenerateError> {
        let mut inputs = Vec::new();
        let mut generations = BTreeMap::new();
        for dep in &self.config.instances[id].dependencies {
            let (instances, public_only) = match dep {
                Dependency::One(d) => (std::slice::from_ref(d), false),
                Dependency::EveryMachine { instances, .. } => (instances.as_slice(), true),
            };
            for d in instances {
                let meta = self.meta(d).ok_or_else(|| StoreError::BadMeta {
                    path: self
                        .store
                        .instance_dir(d)
                        .join(crate::store::layout::META_FILE),
                    reason: format!("{d} must be generated before {id}"),
                })?;
                generations.insert(d.to_string(), meta.generation.clone());
                let dir_name = match (&d.scope, public_only) {
                    (Scope::Machine(m), true) => format!("{}/{m}", d.generator),
                    _ => d.generator.clone(),
                };
                for (name, def) in &self.config.generator(d).files {
                    if public_only && def.secret {
                        continue;
                    }
                    // Read beneath the store handle, never through a link (issue 8: a
                    // committed link to ~/.ssh/id_ed25519 must not become `$in`).
                    let raw = self.store.read_file(d, name, def.secret)?.ok_or_else(|| {
                        StoreError::BadMeta {
                            path: self.store.file_path(d, name, def.secret),
                            reason: format!("{d} lacks a file {id} depends on"),
                        }
                    })?;
                    let bytes = if def.secret {
                        let opener = self.opener.expect("secret inputs open the vault");
                        opener
                            .open_at(&raw, &[&format!("{d}/{name}")])
                            .map_err(Self::seal_err(d))?
                    } else {
                        SecretBytes::new(raw)
                    };
                    inputs.push(InputFile {
                        dependency: dir_name.clone(),
                        file: name.clone(),
                        bytes,
                    });
                }
            }
        }
        Ok((inputs, generations))
    }

    fn generate(
        &self,
        id: &InstanceId,
        prompts: Vec<(String, SecretBytes)>,
        sandbox: &sandbox::SandboxKind,
    ) -> Result<(), GenerateError> {
        let generator = self.config.generator(id);
        let (inputs, dependencies) = self.inputs(id)?;
        let mut env = Vec::new();
        match &id.scope {
            Scope::Machine(m) => env.push(("machine".to_owned(), m.clone())),
            Scope::User(u) => env.push(("user".to_owned(), u.clone())),
            Scope::Shared => {}
        }
        env.extend(generator.validation_env());
        let persisted: Vec<(String, SecretBytes)> = prompts
            .iter()
            .filter(|(name, _)| generator.prompts.get(name).is_some_and(|p| p.persist))
            .map(|(n, v)| (n.clone(), v.duplicate()))
            .collect();
        let job = Job {
            label: id.to_string(),
            generator: generator.name.clone(),
            script: generator.script.clone(),
            runtime_inputs: generator.runtime_inputs.clone(),
            network: generator.network,
            timeout: generator.timeout,
            env,
            inputs,
            prompts,
            outputs: generator.script_outputs(),
            work_root: None,
        };
        let mut outputs = sandbox::run(sandbox, &job)?;
        outputs.extend(persisted);
        let vault = self.sealer.vault();
        let mut staged = Vec::new();
        let mut files = BTreeMap::new();
        for (name, def) in &generator.files {
            let bytes = outputs
                .remove(name)
                .expect("the sandbox verified every declared output");
            let (bytes, entry) = if def.secret {
                let recipients = recipients::recipients_for(self.config, id, def, vault);
                let ct = self
                    .sealer
                    .seal(&bytes, &recipients, &format!("{id}/{name}"))
                    .map_err(Self::seal_err(id))?;
                let entry = MetaFile {
                    deploy: def.deploy,
                    readers: Some(recipients::reader_labels(self.config, id, def)),
                    recipients: Some(recipients),
                    secret: true,
                    sha256: None,
                };
                (ct, entry)
            } else {
                let public = bytes.expose().to_vec();
                let entry = MetaFile {
                    deploy: def.deploy,
                    readers: None,
                    recipients: None,
                    secret: false,
                    sha256: Some(meta::sha256(&public)),
                };
                (public, entry)
            };
            files.insert(name.clone(), entry);
            staged.push(StagedFile {
                name: self.store.stored_name(name, def.secret),
                bytes,
            });
        }
        let meta = Meta {
            definition_hash: generator.definition_hash.clone(),
            dependencies,
            files,
            format: META_FORMAT,
            generation: random_id(),
            generator: generator.name.clone(),
            scope: scope_label(&id.scope),
            validation_hash: generator.validation_hash.clone(),
        };
        staged.push(StagedFile {
            name: crate::store::layout::META_FILE.into(),
            bytes: meta::to_json(&meta),
        });
        self.store.swap_dir(Path::new(&id.rel_path()), &staged)?;
        self.record(id, meta);
        Ok(())
    }

    /// Rewrite the manifests that differ from what the store's metas now give.
    fn write_manifests(
        &self,
    ) -> Result<Vec<(crate::store::layout::PrincipalKind, String)>, GenerateError> {
        let metas = self.metas.lock().unwrap_or_else(|e| e.into_inner());
        let manifests = crate::manifest::build(self.config, self.store, &metas);
        Ok(crate::manifest::write_outdated(self.store, manifests)?)
    }
}

/// `machine:<m>`, `user:<u>` or `shared`.
pub fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Shared => "shared".into(),
        Scope::Machine(m) => format!("machine:{m}"),
        Scope::User(u) => format!("user:{u}"),
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS has a random source");
    hex::encode(bytes)
}
