//! `vars check`: is every declared var present, current, encrypted to exactly the right
//! recipients, and is every manifest current? Reads meta.json files and each `.age` header once;
//! never decrypts and needs no identity.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::crypto;
use crate::dag::Dag;
use crate::manifest;
use crate::meta;
use crate::model::Config;
use crate::plan::{self, Action, PlanError};
use crate::store::Store;
use crate::vault;

/// One problem (or warning) found by `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// `error` fails the check; `warning` does not.
    pub severity: Severity,
    /// What kind: `missing`, `stale-validation`, `stale-dependency`, `stale-recipients`,
    /// `damaged`, `manifest-outdated`, `definition-changed`, `vault-missing`.
    pub kind: String,
    /// The instance (`machines/m/gen`), manifest (`machines/m/manifest.json`) or `keys`.
    pub subject: String,
    /// Human explanation, naming principals, never content.
    pub message: String,
}

/// Severity of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Fails the check (exit 3).
    Error,
    /// Reported only.
    Warning,
}

/// Check the whole store (or only what `machine` receives when given).
pub fn check(
    config: &Config,
    store: &Store,
    machine: Option<&str>,
) -> Result<Vec<Finding>, PlanError> {
    let dag = Dag::from_config(config);
    let mut findings = Vec::new();
    let vault = vault::vault_recipient(store).ok().flatten();
    if vault.is_none() {
        findings.push(Finding {
            severity: Severity::Error,
            kind: "vault-missing".into(),
            subject: "keys".into(),
            message: "keys/vault.pub does not exist: run vars generate".into(),
        });
    }
    if vault.is_some() {
        if vault::next_recipient(store).ok().flatten().is_some() {
            findings.push(Finding {
                severity: Severity::Error,
                kind: "vault-rotation-interrupted".into(),
                subject: "keys".into(),
                message: "a vault key rotation was interrupted: run vars rekey --yes to finish it"
                    .into(),
            });
        }
        let declared = vault::declared_admins(config);
        match vault::recorded_admins(store) {
            Ok(Some(rec)) if rec.admins == declared => {}
            Ok(Some(rec)) => {
                let mut changes = Vec::new();
                for a in declared.keys().filter(|a| rec.admins.get(*a) != declared.get(*a)) {
                    changes.push(format!("admin {a} cannot read it yet"));
                }
                for a in rec.admins.keys().filter(|a| !declared.contains_key(*a)) {
                    changes.push(format!("removed admin {a} still can"));
                }
                findings.push(Finding {
                    severity: Severity::Error,
                    kind: "stale-recipients".into(),
                    subject: "keys/vault.age".into(),
                    message: format!("{}: run vars rekey", changes.join("; ")),
                });
            }
            Ok(None) => findings.push(Finding {
                severity: Severity::Warning,
                kind: "vault-unrecorded".into(),
                subject: "keys".into(),
                message: "keys/vault.json is missing, so the admins of vault.age are unknown: run vars rekey".into(),
            }),
            Err(e) => findings.push(Finding { severity: Severity::Error, kind: "damaged".into(), subject: "keys".into(), message: e.to_string() }),
        }
    }
    let targets: BTreeSet<_> = config
        .instances
        .values()
        .filter(|i| match machine {
            None => true,
            Some(m) => crate::recipients::readers(config, &i.id)
                .contains(&crate::recipients::Principal::Machine(m.to_owned())),
        })
        .map(|i| i.id.clone())
        .collect();
    let plan = match plan::plan(
        config,
        store,
        &dag,
        &targets,
        &BTreeSet::new(),
        vault.as_deref(),
    ) {
        Ok(p) => p,
        Err(PlanError::VaultMissing { .. }) => return Ok(findings),
        Err(e) => return Err(e),
    };
    // Every ciphertext's header is read once, in parallel (the only per-file work).
    let tags = SshTags::new(config);
    let mismatches: Vec<Vec<Finding>> = {
        use rayon::prelude::*;
        plan.instances
            .par_iter()
            .map(|p| match (&p.action, plan.metas.get(&p.id)) {
                (Action::Generate { .. }, _) | (_, None) => Vec::new(),
                (_, Some(meta)) => ciphertext_mismatches(store, p, meta, &tags),
            })
            .collect()
    };
    for (p, mismatches) in plan.instances.iter().zip(mismatches) {
        let subject = p.instance.clone();
        match &p.action {
            Action::UpToDate => {}
            Action::Generate { reasons } => {
                for r in reasons {
                    let kind = match r {
                        plan::Reason::Missing | plan::Reason::MissingFile { .. } => "missing",
                        plan::Reason::Damaged { .. } => "damaged",
                        plan::Reason::ValidationChanged => "stale-validation",
                        plan::Reason::DependencyChanged { .. }
                        | plan::Reason::DependencyRegenerated { .. } => "stale-dependency",
                        plan::Reason::Requested => continue,
                    };
                    findings.push(Finding {
                        severity: Severity::Error,
                        kind: kind.into(),
                        subject: subject.clone(),
                        message: format!("{r}: run vars generate"),
                    });
                }
            }
            Action::Rekey { secrets } => {
                for s in secrets {
                    let mut parts = Vec::new();
                    if !s.added.is_empty() {
                        parts.push(format!("not readable yet by {}", s.added.join(", ")));
                    }
                    if !s.removed.is_empty() {
                        parts.push(format!("still readable by {}", s.removed.join(", ")));
                    }
                    findings.push(Finding {
                        severity: Severity::Error,
                        kind: "stale-recipients".into(),
                        subject: subject.clone(),
                        message: format!(
                            "{}: {}: run vars rekey (or vars generate)",
                            s.file,
                            parts.join("; ")
                        ),
                    });
                }
            }
        }
        if p.definition_changed {
            findings.push(Finding {
                severity: Severity::Warning,
                kind: "definition-changed".into(),
                subject: subject.clone(),
                message: "the generator definition changed since generation; not regenerated (vars generate --regenerate to rotate)".into(),
            });
        }
        findings.extend(mismatches);
    }
    // Instance directories nothing declares any more (a generator unassigned, a machine
    // removed): their secrets are still readable by whoever they were encrypted to.
    if machine.is_none() {
        let declared: BTreeSet<String> = config.instances.keys().map(ToString::to_string).collect();
        for rel in stored_instances(store) {
            if !declared.contains(&rel) {
                findings.push(Finding {
                    severity: Severity::Warning,
                    kind: "orphaned".into(),
                    subject: rel.clone(),
                    message: format!("not declared in vars.yaml any more: delete it (git rm -r vars/{rel}) once nothing uses it"),
                });
            }
        }
    }
    for m in manifest::build_from(config, &plan.metas) {
        if machine.is_some_and(|want| m.kind != "machine" || m.name != want) {
            continue;
        }
        let want = meta::to_json(&m);
        let have = store.read_manifest(&m.kind, &m.name)?;
        if have.as_deref() != Some(&want[..]) {
            let path = store.manifest_path(&m.kind, &m.name);
            let rel = path
                .strip_prefix(&store.dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            findings.push(Finding {
                severity: Severity::Error,
                kind: "manifest-outdated".into(),
                subject: rel,
                message: if have.is_none() {
                    "missing: run vars generate".into()
                } else {
                    "out of date: run vars generate".into()
                },
            });
        }
    }
    Ok(findings)
}

/// The ssh key tags of the declared ssh recipients (what their stanzas are labelled with).
struct SshTags(std::collections::HashMap<String, String>);

impl SshTags {
    fn new(config: &Config) -> Self {
        let texts = config
            .machines
            .values()
            .flat_map(|m| &m.recipients)
            .chain(config.users.values().flat_map(|u| &u.recipients));
        SshTags(
            texts
                .filter_map(|r| Some((r.clone(), crypto::ssh_tag(r)?)))
                .collect(),
        )
    }

    /// The tag of an ssh recipient, also one no longer declared.
    fn of(&self, recipient: &str) -> Option<String> {
        self.0
            .get(recipient)
            .cloned()
            .or_else(|| crypto::ssh_tag(recipient))
    }
}

/// The secrets of an instance whose ciphertext does not match what meta.json says: one stanza
/// per recipient, and the ssh stanzas' key tags those of the recorded ssh recipients.
fn ciphertext_mismatches(
    store: &Store,
    p: &plan::InstancePlan,
    meta: &meta::Meta,
    tags: &SshTags,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, f) in meta.files.iter().filter(|(_, f)| f.secret) {
        let path = store.file_path(&p.id, name, true);
        let detail = match std::fs::read(&path) {
            Err(e) => Some(format!("cannot read {}: {e}", path.display())),
            Ok(bytes) => match crypto::header_stanzas(&bytes) {
                Err(e) => Some(format!("{name}.age: {e}")),
                Ok(stanzas) => {
                    let recorded = f.recipients.as_deref().unwrap_or_default();
                    let mut want_tags: Vec<String> =
                        recorded.iter().filter_map(|r| tags.of(r)).collect();
                    let mut have_tags: Vec<String> = stanzas
                        .iter()
                        .filter(|s| s.kind.starts_with("ssh-"))
                        .filter_map(|s| s.first_arg.clone())
                        .collect();
                    want_tags.sort();
                    have_tags.sort();
                    let real = stanzas.len();
                    if real != recorded.len() || want_tags != have_tags {
                        Some(format!(
                            "{name}.age is encrypted to {real} recipient(s) but meta.json lists {}: regenerate or rekey it",
                            recorded.len()
                        ))
                    } else {
                        None
                    }
                }
            },
        };
        if let Some(message) = detail {
            findings.push(Finding {
                severity: Severity::Error,
                kind: "damaged".into(),
                subject: p.instance.clone(),
                message,
            });
        }
    }
    findings
}

/// `machines/<m>/<gen>`, `users/<u>/<gen>` and `shared/<gen>` directories present in the store.
fn stored_instances(store: &Store) -> Vec<String> {
    let dirs = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect()
    };
    let mut out: Vec<String> = dirs(&store.dir.join("shared"))
        .into_iter()
        .map(|g| format!("shared/{g}"))
        .collect();
    for group in ["machines", "users"] {
        for owner in dirs(&store.dir.join(group)) {
            for g in dirs(&store.dir.join(group).join(&owner)) {
                out.push(format!("{group}/{owner}/{g}"));
            }
        }
    }
    out.sort();
    out
}
