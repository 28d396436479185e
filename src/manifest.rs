//! Building `manifest.json` for every machine and user from the model and the stored
//! `meta.json` files (DESIGN §3). `generate` writes them; `check` compares them.

use std::collections::BTreeMap;

use crate::meta::{META_FORMAT, Manifest, ManifestFile, ManifestGenerator, Meta};
use crate::model::{Config, InstanceId, Scope};
use crate::store::{Store, StoreError};

/// The manifests every machine and user should have, given the store's current metas.
pub fn build_all(config: &Config, store: &Store) -> Result<Vec<Manifest>, StoreError> {
    use rayon::prelude::*;
    let ids: Vec<&InstanceId> = config.instances.keys().collect();
    // A damaged meta.json is reported by plan/check; here it just lacks hashes.
    let metas: BTreeMap<InstanceId, Meta> = ids
        .par_iter()
        .filter_map(|id| Some(((*id).clone(), store.read_meta(id).ok().flatten()?)))
        .collect::<Vec<_>>()
        .into_iter()
        .collect();
    Ok(build_from(config, &metas))
}

/// The manifests, given the metas already read (a plan holds them).
pub fn build_from(config: &Config, metas: &BTreeMap<InstanceId, Meta>) -> Vec<Manifest> {
    let entry = |id: &InstanceId| -> ManifestGenerator {
        let generator = config.generator(id);
        let meta = metas.get(id);
        let files = generator
            .files
            .iter()
            .filter(|(_, f)| f.deploy)
            .map(|(name, f)| {
                let file = if f.secret {
                    format!("{name}.age")
                } else {
                    name.clone()
                };
                (
                    name.clone(),
                    ManifestFile {
                        group: f.group.clone(),
                        mode: format!("{:04o}", f.mode),
                        needed_for: f.needed_for,
                        owner: f.owner.clone(),
                        path: format!("{id}/{file}"),
                        secret: f.secret,
                        sha256: meta
                            .and_then(|m| m.files.get(name))
                            .and_then(|m| m.sha256.clone()),
                    },
                )
            })
            .collect();
        ManifestGenerator { files }
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
                    if machine.users.contains(u) {
                        users
                            .entry(u.clone())
                            .or_default()
                            .insert(id.generator.clone(), entry(id));
                    }
                    false
                }
            };
            if mine {
                generators.insert(id.generator.clone(), entry(id));
            }
        }
        out.push(Manifest {
            format: META_FORMAT,
            generators,
            kind: "machine".into(),
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
            if mine {
                generators.insert(id.generator.clone(), entry(id));
            }
        }
        out.push(Manifest {
            format: META_FORMAT,
            generators,
            kind: "user".into(),
            name: u.clone(),
            users: BTreeMap::new(),
        });
    }
    out
}

/// The manifests whose stored `manifest.json` differs from what [`build_all`] gives (missing
/// or out of date). A run interrupted after its instances but before its manifests leaves
/// only these behind, so `generate` and `rekey` treat them as work to do.
pub fn outdated(config: &Config, store: &Store) -> Result<Vec<Manifest>, StoreError> {
    outdated_among(store, build_all(config, store)?)
}

/// The manifests among `manifests` whose file differs.
pub fn outdated_among(
    store: &Store,
    manifests: Vec<Manifest>,
) -> Result<Vec<Manifest>, StoreError> {
    let mut out = Vec::new();
    for m in manifests {
        if store.read_manifest(&m.kind, &m.name)?.as_deref() != Some(&crate::meta::to_json(&m)[..])
        {
            out.push(m);
        }
    }
    Ok(out)
}
