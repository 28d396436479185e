//! `vars check`: is every declared var present, current, encrypted to exactly the right
//! recipients, is every manifest current, and does the store hold nothing it should not (a
//! link, a device, a stray file: DESIGN §3)? Reads each `meta.json` and each secret's header
//! once; never decrypts and needs no identity.

use std::collections::BTreeSet;

use rayon::prelude::*;
use serde::Serialize;

use crate::fs_util::Kind;
use crate::manifest;
use crate::meta;
use crate::model::Config;
use crate::plan::{self, Action, PlanError, Reason};
use crate::recipients::{self, Principal};
use crate::seal;
use crate::store::layout::{self, PrincipalKind};
use crate::store::{Listing, Store};
use crate::vault;

/// One problem (or warning) found by `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// `error` fails the check; `warning` does not.
    pub severity: Severity,
    /// What kind of problem.
    pub kind: FindingKind,
    /// The instance (`machines/m/gen`), manifest (`machines/m/manifest.json`), path in the
    /// store, or `keys`.
    pub subject: String,
    /// Human explanation, naming principals and files, never content.
    pub message: String,
}

/// The kinds of [`Finding`], as `--json` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// An instance or file is not generated.
    Missing,
    /// `validation` changed since generation.
    StaleValidation,
    /// A dependency changed since generation.
    StaleDependency,
    /// A secret (or `vault.age`) is not encrypted to exactly its declared readers.
    StaleRecipients,
    /// A `meta.json`, key file or ciphertext is damaged or does not match `meta.json`.
    Damaged,
    /// Something is in the store that must not be: a symlink, device, fifo, or a file or
    /// directory vars did not write (DESIGN §3).
    Tampered,
    /// A manifest is missing or out of date.
    ManifestOutdated,
    /// `keys/vault.pub` is missing.
    VaultMissing,
    /// A vault rotation was interrupted.
    VaultRotationInterrupted,
    /// Warning: the generator definition changed since generation.
    DefinitionChanged,
    /// Warning: an instance directory nothing declares any more.
    Orphaned,
    /// `keys/vault.json` is missing or unproven: the next rekey rotates the vault key.
    VaultUnrecorded,
    /// A leftover of an interrupted write (`.D.old`, a spare…) is in the store: a crash this
    /// machine's recovery could not repair, or a commit (vars never commits them).
    Leftover,
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

fn error(kind: FindingKind, subject: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Error,
        kind,
        subject: subject.into(),
        message: message.into(),
    }
}

fn warning(kind: FindingKind, subject: impl Into<String>, message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Warning,
        ..error(kind, subject, message)
    }
}

/// Check the whole store (or only what `machine` receives when given).
pub fn check(
    config: &Config,
    store: &Store,
    machine: Option<&str>,
) -> Result<Vec<Finding>, PlanError> {
    let mut findings = Vec::new();
    let state = match vault::state(store) {
        Ok(s) => s,
        Err(e) => {
            findings.push(error(FindingKind::Damaged, "keys", e.to_string()));
            vault::VaultState::default()
        }
    };
    match &state.recipient {
        None => findings.push(error(
            FindingKind::VaultMissing,
            "keys",
            "keys/vault.pub does not exist: run vars generate",
        )),
        Some(_) => vault_findings(config, store, &state, &mut findings),
    }
    let targets: BTreeSet<_> = config
        .instances
        .keys()
        .filter(|id| match machine {
            None => true,
            Some(m) => recipients::readers(config, id).contains(&Principal::Machine(m.to_owned())),
        })
        .cloned()
        .collect();
    let mut plan = match plan::plan(
        config,
        store,
        &targets,
        &BTreeSet::new(),
        state.recipient.as_deref(),
    ) {
        Ok(p) => p,
        Err(PlanError::VaultMissing { .. }) => return Ok(findings),
        Err(e) => return Err(e),
    };
    let listing = store.instances()?;
    // Every ciphertext's header is read once, in parallel (the only per-file work).
    let tags = SshTags::new(config);
    let mismatches: Vec<Vec<Finding>> = plan
        .instances
        .par_iter()
        .map(|p| match (&p.action, plan.metas.get(&p.id)) {
            (Action::Generate { .. }, _) | (_, None) => Vec::new(),
            (_, Some(meta)) => ciphertext_mismatches(store, &p.id, meta, &tags),
        })
        .collect();
    for (p, mismatches) in plan.instances.iter().zip(mismatches) {
        let subject = p.id.to_string();
        match &p.action {
            Action::UpToDate => {}
            Action::Generate { reasons } => {
                for r in reasons {
                    let kind = match r {
                        Reason::Missing | Reason::MissingFile { .. } => FindingKind::Missing,
                        Reason::Damaged { .. } => FindingKind::Damaged,
                        Reason::ValidationChanged => FindingKind::StaleValidation,
                        Reason::DependencyChanged { .. } | Reason::DependencyRegenerated { .. } => {
                            FindingKind::StaleDependency
                        }
                        Reason::Requested => continue,
                    };
                    findings.push(error(kind, &subject, format!("{r}: run vars generate")));
                }
            }
            Action::Rekey { secrets } => {
                for s in secrets {
                    let mut parts = Vec::new();
                    if !s.added.is_empty() {
                        parts.push(format!("not readable yet by {}", join(&s.added)));
                    }
                    if !s.removed.is_empty() {
                        parts.push(format!("still readable by {}", join(&s.removed)));
                    }
                    if let Some(from) = s.convert_from {
                        parts.push(format!(
                            "stored as {} but settings.backend is {}",
                            layout::stored_name(&s.file, true, from),
                            store.backend()
                        ));
                    }
                    if parts.is_empty() {
                        parts.push("its deploy setting changed".into());
                    }
                    findings.push(error(
                        FindingKind::StaleRecipients,
                        &subject,
                        format!(
                            "{}: {}: run vars rekey (or vars generate)",
                            s.file,
                            parts.join("; ")
                        ),
                    ));
                }
            }
        }
        if p.definition_changed {
            findings.push(warning(
                FindingKind::DefinitionChanged,
                &subject,
                "the generator definition changed since generation; not regenerated (vars generate --regenerate to rotate)",
            ));
        }
        findings.extend(mismatches);
    }
    if machine.is_none() {
        findings.extend(store_findings(config, store, &listing));
    }
    // The manifests need every instance's meta (a machine also receives shared instances
    // outside `targets` only if they were planned; read the rest once).
    let rest: Vec<_> = config
        .instances
        .keys()
        .filter(|id| plan.get(id).is_none())
        .cloned()
        .collect();
    plan.metas.extend(plan::read_metas(store, &rest)?);
    for m in manifest::build(config, store, &plan.metas) {
        if machine.is_some_and(|want| m.kind != PrincipalKind::Machine || m.name != want) {
            continue;
        }
        let have = match store.read_manifest(m.kind, &m.name) {
            Ok(h) => h,
            // A linked or special manifest: the strays report it; here it is "not current".
            Err(crate::store::StoreError::BadMeta { reason, .. }) => {
                findings.push(error(
                    FindingKind::Damaged,
                    store.manifest_rel(m.kind, &m.name),
                    reason,
                ));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if have.as_deref() != Some(&meta::to_json(&m)[..]) {
            findings.push(error(
                FindingKind::ManifestOutdated,
                store.manifest_rel(m.kind, &m.name),
                if have.is_none() {
                    "missing: run vars generate"
                } else {
                    "out of date: run vars generate"
                },
            ));
        }
    }
    Ok(findings)
}

fn join(readers: &[plan::Reader]) -> String {
    readers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An interrupted rotation, and admins `vault.age` is wrapped to that are not declared (or
/// the reverse).
fn vault_findings(
    config: &Config,
    store: &Store,
    state: &vault::VaultState,
    findings: &mut Vec<Finding>,
) {
    if state.next.is_some() {
        findings.push(error(
            FindingKind::VaultRotationInterrupted,
            "keys",
            "keys/next.* exist: a vault key rotation was interrupted, or someone planted them; an admin's vars rekey --yes checks them against the vault key and finishes the rotation (it refuses files the vault did not write)",
        ));
    }
    let declared = vault::declared_admins(config);
    let recorded = vault::recorded_admins(store);
    if let Ok(Some(rec)) = &recorded {
        findings.extend(vault_age_mismatch(store, rec));
    }
    match recorded {
        Ok(Some(rec)) if rec.admins == declared => {}
        Ok(Some(rec)) => {
            let mut changes = Vec::new();
            for (a, now) in &declared {
                match rec.admins.get(a) {
                    None => changes.push(format!("admin {a} cannot read it yet")),
                    Some(was) => {
                        if now.iter().any(|r| !was.contains(r)) {
                            changes.push(format!("a new key of admin {a} cannot read it yet"));
                        }
                        if was.iter().any(|r| !now.contains(r)) {
                            changes.push(format!("a removed key of admin {a} still can"));
                        }
                    }
                }
            }
            for a in rec.admins.keys().filter(|a| !declared.contains_key(*a)) {
                changes.push(format!("removed admin {a} still can"));
            }
            findings.push(error(
                FindingKind::StaleRecipients,
                "keys/vault.age",
                format!("{}: run vars rekey", changes.join("; ")),
            ));
        }
        Ok(None) => findings.push(error(
            FindingKind::VaultUnrecorded,
            "keys",
            "keys/vault.json is missing, so who holds the vault is unknown: run vars rekey (it rotates the vault key)",
        )),
        Err(e) => findings.push(error(FindingKind::Damaged, "keys", e.to_string())),
    }
}

/// `keys/vault.age` wrapped to other recipients than `keys/vault.json` records (someone
/// changed who holds the vault, or edited the record to hide an admin): one stanza per
/// recorded recipient, and the ssh stanzas' key tags those of the recorded ssh recipients.
fn vault_age_mismatch(store: &Store, rec: &vault::VaultRecord) -> Option<Finding> {
    let bytes = store.read_key(crate::store::KeyFile::VaultAge).ok()??;
    let mut recorded: Vec<&String> = rec.admins.values().flatten().collect();
    recorded.sort();
    recorded.dedup();
    let detail = match seal::stanzas(crate::spec::Backend::Age, &bytes) {
        Err(e) => format!("keys/vault.age: {e}"),
        Ok(stanzas) => {
            let mut want: Vec<String> = recorded
                .iter()
                .filter_map(|r| crate::crypto::ssh_tag(r))
                .collect();
            let mut have: Vec<String> = stanzas
                .iter()
                .filter(|s| s.kind.starts_with("ssh-"))
                .filter_map(|s| s.first_arg.clone())
                .collect();
            want.sort();
            have.sort();
            if stanzas.len() == recorded.len() && want == have {
                return None;
            }
            format!(
                "keys/vault.age is wrapped to {} recipient(s) but keys/vault.json records {}: who holds the vault was changed behind the record; run vars rekey --rotate-vault",
                stanzas.len(),
                recorded.len()
            )
        }
    };
    Some(error(FindingKind::Damaged, "keys/vault.age", detail))
}

/// What the store holds that nothing declares (orphaned instances) or that must not be there
/// at all: links, special files, stray files and directories, undeclared files in an instance.
fn store_findings(config: &Config, store: &Store, listing: &Listing) -> Vec<Finding> {
    let mut findings = Vec::new();
    for s in &listing.strays {
        let rel = crate::text::escape(&s.rel).into_owned();
        findings.push(error(
            FindingKind::Tampered,
            &rel,
            format!(
                "a {} vars did not write: remove it (git rm vars/{rel})",
                s.kind.describe()
            ),
        ));
    }
    for s in &listing.leftovers {
        let rel = crate::text::escape(&s.rel).into_owned();
        let what = s.kind.describe();
        let message = match rel
            .rsplit_once('/')
            .map_or(rel.as_str(), |(_, n)| n)
            .strip_suffix(".old")
            .and_then(|n| n.strip_prefix('.'))
        {
            // The old content of an instance a fallback swap moved aside; after a crash of
            // this machine that its recovery could not repair, it may be the only copy.
            Some(orig) if !orig.is_empty() => format!(
                "a {what} named like the old content of an interrupted swap of {orig}: if this machine crashed during a vars run and {orig} is missing, check the content and move it back; if it came from a commit, delete it (git rm -r vars/{rel}): vars never takes it from a commit"
            ),
            _ => format!(
                "a {what} named like vars' own crash leftovers, which vars never commits and never takes from a commit: delete it (rm -r vars/{rel}; git rm -r if it is committed)"
            ),
        };
        findings.push(error(FindingKind::Leftover, &rel, message));
    }
    for stored in &listing.instances {
        let id = &stored.id;
        let rel = id.to_string();
        let present: BTreeSet<String> = stored
            .entries
            .iter()
            .map(|e| e.name.to_string_lossy().into_owned())
            .collect();
        let expected: Option<BTreeSet<String>> = config.instances.get(id).map(|_| {
            let generator = config.generator(id);
            std::iter::once(layout::META_FILE.to_owned())
                .chain(generator.files.iter().map(|(name, def)| {
                    // A secret still stored by the other backend (a conversion under way) is
                    // stale, not stray: the planner reports it.
                    let own = store.stored_name(name, def.secret);
                    let other =
                        layout::stored_name(name, true, layout::other_backend(store.backend()));
                    if def.secret && !present.contains(&own) && present.contains(&other) {
                        other
                    } else {
                        own
                    }
                }))
                .collect()
        });
        if expected.is_none() {
            findings.push(warning(
                FindingKind::Orphaned,
                &rel,
                format!("not declared in vars.yaml any more: delete it (git rm -r vars/{rel}) once nothing uses it"),
            ));
            // An undeclared instance of a declared generator: a file that generator calls
            // secret is plaintext here whatever this instance's meta.json says (as `scan`).
            if let Some(generator) = config.generators.get(&id.generator) {
                for (name, _) in generator.files.iter().filter(|(_, d)| d.secret) {
                    if present.contains(name) {
                        findings.push(error(
                            FindingKind::Tampered,
                            format!("{rel}/{name}"),
                            format!("generator {} declares {name} secret, but it is stored in plaintext: delete it (git rm vars/{rel}/{name}) and rotate the value", id.generator),
                        ));
                    }
                }
            }
        }
        for e in &stored.entries {
            let name = e.name.to_string_lossy();
            let declared = expected.as_ref().is_none_or(|x| x.contains(name.as_ref()));
            if e.kind != Kind::File || !declared {
                let what = if e.kind == Kind::File {
                    "file no generator declares".to_owned()
                } else {
                    e.kind.describe().to_owned()
                };
                let name = crate::text::escape(&name).into_owned();
                findings.push(error(
                    FindingKind::Tampered,
                    format!("{rel}/{name}"),
                    format!("a {what} in the instance: remove it (git rm vars/{rel}/{name}); vars never reads it"),
                ));
            }
        }
    }
    findings
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
                .filter_map(|r| Some((r.clone(), crate::crypto::ssh_tag(r)?)))
                .collect(),
        )
    }

    /// The tag of an ssh recipient, also one no longer declared.
    fn of(&self, recipient: &str) -> Option<String> {
        self.0
            .get(recipient)
            .cloned()
            .or_else(|| crate::crypto::ssh_tag(recipient))
    }
}

/// The secrets of an instance whose ciphertext does not match what meta.json says: one stanza
/// per recipient, and the ssh stanzas' key tags those of the recorded ssh recipients.
fn ciphertext_mismatches(
    store: &Store,
    id: &crate::model::InstanceId,
    meta: &meta::Meta,
    tags: &SshTags,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, f) in meta.files.iter().filter(|(_, f)| f.secret) {
        let stored = store.stored_name(name, true);
        let detail = match store.read_secret(id, name) {
            Err(e) => Some(format!("cannot read {stored}: {e}")),
            Ok(None) => None, // the planner reports the missing file
            Ok(Some((backend, bytes))) => match seal::stanzas(backend, &bytes) {
                Err(e) => Some(format!("{stored}: {e}")),
                // The place an age file names in its header (checked by decryption; here, a
                // claim that catches a ciphertext copied from elsewhere before anyone reads it).
                Ok(_)
                    if backend == crate::spec::Backend::Age
                        && crate::crypto::header_location(&bytes)
                            .ok()
                            .flatten()
                            .as_deref()
                            != Some(format!("{id}/{name}").as_str()) =>
                {
                    let found = crate::crypto::header_location(&bytes).ok().flatten();
                    Some(format!(
                        "{stored} was written for {}: it was copied here from elsewhere in the store; regenerate it",
                        found
                            .map(|f| crate::text::escape(&f).into_owned())
                            .unwrap_or_else(|| "no place (vars before 0.2)".into())
                    ))
                }
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
                    (real != recorded.len() || want_tags != have_tags).then(|| {
                        format!(
                            "{stored} is encrypted to {real} recipient(s) but meta.json lists {}: regenerate or rekey it",
                            recorded.len()
                        )
                    })
                }
            },
        };
        if let Some(message) = detail {
            findings.push(error(FindingKind::Damaged, id.to_string(), message));
        }
    }
    findings
}
