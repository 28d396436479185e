//! Building `manifest.json` for every machine and user from the model and the stored
//! `meta.json` files (DESIGN §3). `generate` and `rekey` write them; `check` compares them.
//!
//! A manifest names only files that exist: an instance without a valid `meta.json` (never
//! generated, or a first generation that failed) is left out, so the Nix module never points
//! at a missing file (issue 8).

use std::collections::BTreeMap;

use crate::meta::{META_FORMAT, Manifest, ManifestFile, ManifestGenerator, Meta};
use crate::model::{Config, InstanceId, Scope};
use crate::store::layout::PrincipalKind;
use crate::store::{Store, StoreError};

/// The manifests every machine and user should have, given the instances' metas (a plan
/// holds them; instances missing from `metas` are not in the store).
pub fn build(config: &Config, store: &Store, metas: &BTreeMap<InstanceId, Meta>) -> Vec<Manifest> {
    let entry = |id: &InstanceId| -> Option<ManifestGenerator> {
        let meta = metas.get(id)?;
        let generator = config.generator(id);
        let files = generator
            .files
            .iter()
            .filter(|(name, f)| {
                f.deploy && meta.files.get(*name).is_some_and(|m| m.secret == f.secret)
            })
            .map(|(name, f)| {
                (
                    name.clone(),
                    ManifestFile {
                        group: f.group_in(&id.scope),
                        mode: format!("{:04o}", f.mode),
                        needed_for: f.needed_for,
                        owner: f.owner_in(&id.scope),
                        path: store.file_rel(id, name, f.secret),
                        secret: f.secret,
                        sha256: meta.files.get(name).and_then(|m| m.sha256.clone()),
                    },
                )
            })
            .collect();
        Some(ManifestGenerator { files })
    };
    let mut out = Vec::new();
    for (m, machine) in &config.machines {
        let mut generators = BTreeMap::new();
        let mut users: BTreeMap<String, BTreeMap<String, ManifestGenerator>> = BTreeMap::new();
        for (id, inst) in &config.instances {
            let mine = match &id.scope {
                Scope::Machine(owner) => owner == m,
                Scope::Shared => inst.machines.contains(m),
                Scope::User(u) => {
                    if machine.users.contains(u)
                        && let Some(e) = entry(id)
                    {
                        users
                            .entry(u.clone())
                            .or_default()
                            .insert(id.generator.clone(), e);
                    }
                    false
                }
            };
            if mine && let Some(e) = entry(id) {
                generators.insert(id.generator.clone(), e);
            }
        }
        out.push(Manifest {
            format: META_FORMAT,
            generators,
            kind: PrincipalKind::Machine,
            name: m.clone(),
            users,
        });
    }
    for u in config.users.keys() {
        let mut generators = BTreeMap::new();
        for (id, inst) in &config.instances {
            let mine = match &id.scope {
                Scope::User(owner) => owner == u,
                Scope::Shared => inst.users.contains(u),
                Scope::Machine(_) => false,
            };
            if mine && let Some(e) = entry(id) {
                generators.insert(id.generator.clone(), e);
            }
        }
        out.push(Manifest {
            format: META_FORMAT,
            generators,
            kind: PrincipalKind::User,
            name: u.clone(),
            users: BTreeMap::new(),
        });
    }
    out
}

/// The manifests among `manifests` whose stored file differs (missing or out of date). A run
/// interrupted after its instances but before its manifests leaves only these behind, so
/// `generate` and `rekey` treat them as work to do.
pub fn outdated(store: &Store, manifests: Vec<Manifest>) -> Result<Vec<Manifest>, StoreError> {
    let mut out = Vec::new();
    for m in manifests {
        if store.read_manifest(m.kind, &m.name)?.as_deref() != Some(&crate::meta::to_json(&m)[..]) {
            out.push(m);
        }
    }
    Ok(out)
}

/// Write the manifests that differ from what is stored; returns which were written.
pub fn write_outdated(
    store: &Store,
    manifests: Vec<Manifest>,
) -> Result<Vec<(PrincipalKind, String)>, StoreError> {
    let mut written = Vec::new();
    for m in outdated(store, manifests)? {
        store.write_manifest(&m)?;
        written.push((m.kind, m.name));
    }
    Ok(written)
}
