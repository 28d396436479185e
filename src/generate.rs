//! Carrying out a generate plan: create or unwrap the vault, collect prompt values, run each
//! instance in the sandbox wave by wave (independent instances in parallel), verify, encrypt
//! the secrets in-process, swap each instance into the store atomically, re-encrypt stale
//! secrets, and rewrite the manifests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use rayon::prelude::*;

use crate::crypto::{self, CryptoError, Identities, Recipient, VaultKey};
use crate::dag::Dag;
use crate::identity::IdentityError;
use crate::meta::{self, META_FORMAT, Meta, MetaFile};
use crate::model::{Config, Dependency, InstanceId, Scope};
use crate::plan::{Action, Plan};
use crate::prompt::{PromptError, PromptValues};
use crate::recipients;
use crate::sandbox::{self, InputFile, Job, SandboxError, SandboxKind};
use crate::secret::SecretBytes;
use crate::store::{StagedFile, Store, StoreError};
use crate::vault::{self, VaultError};
use crate::{fs_util, manifest};

/// Errors applying a plan. Each names the instance; none carries secret content.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A generator script failed or its outputs were wrong.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Prompt values are missing or malformed.
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// Finding identities.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The vault.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// Opening the vault (keyring cache or identities).
    #[error(transparent)]
    Open(#[from] vault::OpenError),
    /// Encryption or decryption of `instance` failed.
    #[error("{instance}: {source}")]
    Crypto {
        /// The instance.
        instance: String,
        /// The cause.
        source: CryptoError,
    },
    /// Reading or writing the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Several instances failed in one wave.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<GenerateError>),
}

/// A callback told about each finished instance.
pub type OnDone = Box<dyn Fn(&str) + Send + Sync>;

/// How to run.
pub struct Options {
    /// Parallel instances.
    pub jobs: usize,
    /// The sandbox to use.
    pub sandbox: SandboxKind,
    /// Prompt values given on the command line.
    pub prompts: PromptValues,
    /// `--identity` files.
    pub identity_files: Vec<PathBuf>,
    /// Called with each instance path as it finishes (the CLI drives a progress bar with it).
    pub on_done: Option<OnDone>,
}

/// What was done.
#[derive(Debug, Default)]
pub struct Report {
    /// Instances generated.
    pub generated: Vec<String>,
    /// Instances whose secrets were re-encrypted.
    pub rekeyed: Vec<String>,
    /// The vault was created.
    pub created_vault: bool,
    /// Manifests rewritten.
    pub manifests: Vec<String>,
}

/// Whether applying the plan needs the unwrapped vault key (to decrypt dependency secrets or
/// re-encrypt stale ones).
pub fn needs_vault(config: &Config, plan: &Plan) -> bool {
    plan.instances.iter().any(|p| match &p.action {
        Action::UpToDate => false,
        Action::Rekey { .. } => true,
        Action::Generate { .. } => config.instances[&p.id]
            .dependencies
            .iter()
            .any(|d| match d {
                Dependency::One(dep) => config.generator(dep).files.values().any(|f| f.secret),
                Dependency::EveryMachine { .. } => false,
            }),
    })
}

/// Apply `plan`. The caller holds the store lock.
pub fn apply(
    config: &Config,
    store: &Store,
    dag: &Dag,
    plan: &Plan,
    opts: &Options,
) -> Result<Report, GenerateError> {
    let mut report = Report::default();
    let to_generate: Vec<InstanceId> = plan.to_generate().map(|p| p.id.clone()).collect();
    // Ask for every prompt before running anything: a missing value fails fast.
    opts.prompts.validate(config)?;
    let mut prompt_values = opts.prompts.collect(config, &to_generate)?;

    // The vault key itself is needed only to decrypt (dependency secrets, re-encryption);
    // otherwise its public half in keys/vault.pub is enough and no identity is asked for.
    let vault: Option<VaultKey> = if plan.create_vault {
        report.created_vault = true;
        Some(vault::create_vault(config, store)?)
    } else if needs_vault(config, plan) {
        Some(vault::open(store, &opts.identity_files)?)
    } else {
        None
    };
    let vault_recipient = match &vault {
        Some(v) => v.recipient(),
        None => vault::vault_recipient(store)?.expect("plan found the vault"),
    };
    let mut vault_ids = Identities::default();
    if let Some(v) = &vault {
        vault_ids.add_vault(v);
    }

    let parsed = parse_recipients(config, &vault_recipient)?;
    let ctx = Ctx {
        config,
        store,
        vault_ids: &vault_ids,
        next_ids: None,
        vault: &vault_recipient,
        parsed: &parsed,
        armor: config.armor,
    };

    let generate_set: BTreeSet<InstanceId> = to_generate.iter().cloned().collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()
        .expect("a thread pool can be built");
    for wave in dag.waves(&generate_set).map_err(|e| {
        GenerateError::Store(StoreError::BadMeta {
            path: PathBuf::new(),
            reason: e.to_string(),
        })
    })? {
        let jobs: Vec<(InstanceId, Vec<(String, SecretBytes)>)> = wave
            .into_iter()
            .map(|id| {
                let p = prompt_values.remove(&id).unwrap_or_default();
                (id, p)
            })
            .collect();
        let results: Vec<Result<String, GenerateError>> = pool.install(|| {
            jobs.into_par_iter()
                .map(|(id, prompts)| {
                    let r = ctx
                        .generate(&id, prompts, &opts.sandbox)
                        .map(|()| id.to_string());
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
            ctx.write_manifests(&mut report)?;
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                GenerateError::Many(errors)
            });
        }
    }
    let rekeys: Vec<&InstanceId> = plan
        .instances
        .iter()
        .filter(|p| matches!(p.action, Action::Rekey { .. }))
        .map(|p| &p.id)
        .collect();
    pool.install(|| store.swap_many(&rekeys, |id| ctx.stage_rekey(id, plan.metas.get(*id))))?;
    report
        .rekeyed
        .extend(rekeys.iter().map(ToString::to_string));
    ctx.write_manifests(&mut report)?;
    Ok(report)
}

/// Parse every recipient of the fleet once; encryption of each file borrows from here.
pub(crate) fn parse_recipients(
    config: &Config,
    vault: &str,
) -> Result<HashMap<String, Recipient>, GenerateError> {
    let mut parsed: HashMap<String, Recipient> = HashMap::new();
    for r in std::iter::once(vault)
        .chain(
            config
                .machines
                .values()
                .flat_map(|m| m.recipients.iter().map(String::as_str)),
        )
        .chain(
            config
                .users
                .values()
                .flat_map(|u| u.recipients.iter().map(String::as_str)),
        )
    {
        if !parsed.contains_key(r) {
            let p = Recipient::parse(r).map_err(|source| GenerateError::Crypto {
                instance: "recipients".into(),
                source,
            })?;
            parsed.insert(r.to_owned(), p);
        }
    }
    Ok(parsed)
}

/// What encrypting and re-encrypting instances needs: the model, the store, identities that
/// decrypt existing secrets (the vault, during a rotation also the next vault), the vault
/// recipient new ciphertexts are encrypted to, and the parsed recipients.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a Config,
    pub(crate) store: &'a Store,
    pub(crate) vault_ids: &'a Identities,
    /// During a rotation: the vault key being rotated in (some secrets may already use it).
    pub(crate) next_ids: Option<&'a Identities>,
    pub(crate) vault: &'a str,
    pub(crate) parsed: &'a HashMap<String, Recipient>,
    pub(crate) armor: bool,
}

impl Ctx<'_> {
    fn crypto_err(&self, id: &InstanceId) -> impl Fn(CryptoError) -> GenerateError {
        let instance = id.to_string();
        move |source| GenerateError::Crypto {
            instance: instance.clone(),
            source,
        }
    }

    /// Encrypt a secret of instance `id` to `recipients` (from [`recipients::recipients_for`]).
    fn encrypt(
        &self,
        id: &InstanceId,
        recipients: &[String],
        plaintext: &SecretBytes,
    ) -> Result<Vec<u8>, GenerateError> {
        // The vault's stanza goes first: an admin (or rekey) unwrapping with the vault key
        // then finds its stanza on the first try instead of testing every host's.
        let mut refs: Vec<&Recipient> = Vec::with_capacity(recipients.len());
        refs.push(&self.parsed[self.vault]);
        refs.extend(
            recipients
                .iter()
                .filter(|r| r.as_str() != self.vault)
                .map(|r| &self.parsed[r]),
        );
        crypto::encrypt(plaintext, &refs, self.armor).map_err(self.crypto_err(id))
    }

    /// The `$in` files of an instance: dependency outputs, secrets decrypted with the vault.
    fn inputs(
        &self,
        id: &InstanceId,
    ) -> Result<(Vec<InputFile>, BTreeMap<String, String>), GenerateError> {
        let mut inputs = Vec::new();
        let mut generations = BTreeMap::new();
        for dep in &self.config.instances[id].dependencies {
            let (instances, public_only) = match dep {
                Dependency::One(d) => (vec![d.clone()], false),
                Dependency::EveryMachine { instances, .. } => (instances.clone(), true),
            };
            for d in instances {
                let meta = self
                    .store
                    .read_meta(&d)?
                    .ok_or_else(|| StoreError::BadMeta {
                        path: self.store.instance_dir(&d).join("meta.json"),
                        reason: format!("{d} must be generated before {id}"),
                    })?;
                generations.insert(d.to_string(), meta.generation.clone());
                let dir_name = match (&d.scope, public_only) {
                    (Scope::Machine(m), true) => format!("{}/{m}", d.generator),
                    _ => d.generator.clone(),
                };
                for (name, def) in &self.config.generator(&d).files {
                    if public_only && def.secret {
                        continue;
                    }
                    let path = self.store.file_path(&d, name, def.secret);
                    let raw = fs_util::read(&path).map_err(StoreError::from)?;
                    let bytes = if def.secret {
                        self.vault_ids.decrypt(&raw).map_err(self.crypto_err(&d))?
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
        sandbox: &SandboxKind,
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
        let mut staged = Vec::new();
        let mut files = BTreeMap::new();
        for (name, def) in &generator.files {
            let bytes = outputs
                .remove(name)
                .expect("the sandbox verified every declared output");
            if def.secret {
                let recipients = recipients::recipients_for(self.config, id, def, self.vault);
                let ct = self.encrypt(id, &recipients, &bytes)?;
                staged.push(StagedFile {
                    name: format!("{name}.age"),
                    bytes: ct,
                });
                files.insert(
                    name.clone(),
                    MetaFile {
                        deploy: def.deploy,
                        readers: Some(recipients::reader_labels(self.config, id, def)),
                        recipients: Some(recipients),
                        secret: true,
                        sha256: None,
                    },
                );
            } else {
                let public = bytes.expose().to_vec();
                files.insert(
                    name.clone(),
                    MetaFile {
                        deploy: def.deploy,
                        readers: None,
                        recipients: None,
                        secret: false,
                        sha256: Some(meta::sha256(&public)),
                    },
                );
                staged.push(StagedFile {
                    name: name.clone(),
                    bytes: public,
                });
            }
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
            name: "meta.json".into(),
            bytes: meta::to_json(&meta),
        });
        self.store.swap_dir(&self.store.instance_dir(id), &staged)?;
        Ok(())
    }

    /// Re-encrypt the stale secrets of an instance; everything else is copied byte for byte.
    /// Returns the instance dir and its new content, for [`Store::swap_many`].
    /// `meta` is the instance's meta.json as the planner read it (read again when absent).
    pub(crate) fn stage_rekey(
        &self,
        id: &InstanceId,
        meta: Option<&Meta>,
    ) -> Result<(PathBuf, Vec<StagedFile>), GenerateError> {
        let generator = self.config.generator(id);
        let mut meta = match meta {
            Some(m) => m.clone(),
            None => self
                .store
                .read_meta(id)?
                .expect("rekey is planned only for existing instances"),
        };
        let dir = self.store.instance_dir(id);
        let mut staged = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|source| {
            StoreError::Io(fs_util::IoError {
                action: "list",
                path: dir.clone(),
                source,
            })
        })? {
            let entry = entry.map_err(|source| {
                StoreError::Io(fs_util::IoError {
                    action: "list",
                    path: dir.clone(),
                    source,
                })
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "meta.json" {
                continue;
            }
            let raw = fs_util::read(&entry.path()).map_err(StoreError::from)?;
            let file = name.strip_suffix(".age");
            let bytes = match file.and_then(|f| generator.files.get(f).map(|d| (f, d))) {
                Some((f, def)) if def.secret => {
                    let want = recipients::recipients_for(self.config, id, def, self.vault);
                    let entry = meta
                        .files
                        .get_mut(f)
                        .expect("planned files are in meta.json");
                    if entry.recipients.as_ref() == Some(&want) {
                        raw
                    } else {
                        // During a rotation, try first the vault the file is recorded to be
                        // encrypted to: each identity tried costs a scalar multiplication.
                        let recorded = entry.recipients.as_deref().unwrap_or_default();
                        let plain = match self
                            .next_ids
                            .filter(|_| recorded.iter().any(|r| r == self.vault))
                        {
                            Some(next) => next.decrypt(&raw),
                            None => self.vault_ids.decrypt(&raw),
                        }
                        .map_err(self.crypto_err(id))?;
                        let ct = self.encrypt(id, &want, &plain)?;
                        entry.recipients = Some(want);
                        entry.readers = Some(recipients::reader_labels(self.config, id, def));
                        ct
                    }
                }
                _ => raw,
            };
            staged.push(StagedFile { name, bytes });
        }
        staged.push(StagedFile {
            name: "meta.json".into(),
            bytes: meta::to_json(&meta),
        });
        Ok((dir, staged))
    }

    fn write_manifests(&self, report: &mut Report) -> Result<(), GenerateError> {
        for m in manifest::build_all(self.config, self.store)? {
            let want = meta::to_json(&m);
            if self.store.read_manifest(&m.kind, &m.name)?.as_deref() != Some(&want[..]) {
                self.store.write_manifest(&m)?;
                report.manifests.push(format!("{} {}", m.kind, m.name));
            }
        }
        Ok(())
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
