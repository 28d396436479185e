//! A store `manifest.json` (DESIGN §3) as an install [`Plan`]: how a host without Nix
//! installs (`vars install --manifest vars/machines/M/manifest.json --store vars`). The store
//! is untrusted, so its manifest may name only the declared files of its own instances: a
//! machine's `generators.<gen>.files.<file>` must be `machines/<m>/<gen>/<file>.age` (or the
//! shared instance's `shared/<gen>/…`), a user instance deployed to it
//! `users/<u>/<gen>/<file>.age`, and a public file the same without `.age`. Anything else
//! (another machine's file, a key file, `..`) is a problem before anything is read.
//! Store manifests carry no units, links or templates: those come from the Nix modules.

use std::collections::BTreeMap;

use super::Problem;
use super::manifest::{Checker, Item, Plan, Source, USERS_PREFIX};
use crate::meta::{Manifest, ManifestGenerator};
use crate::model::{check_file_name, check_name};
use crate::spec::Backend;
use crate::store::layout::{self, PrincipalKind};

/// The plan of a store manifest.
pub(super) fn plan(m: Manifest) -> Result<Plan, Vec<Problem>> {
    let mut c = Checker::default();
    let mut items = Vec::new();
    if m.format != crate::meta::META_FORMAT {
        c.fail(
            "the manifest",
            format!("format {} is not supported", m.format),
        );
    }
    if let Err(why) = check_name(&m.name) {
        c.fail("the manifest's name", why);
    }
    let own = format!("{}/{}", m.kind.dir(), m.name);
    let homes = |generator: &str| {
        vec![
            format!("{own}/{generator}"),
            format!("{}/{generator}", layout::SHARED_DIR),
        ]
    };
    add(&mut c, &mut items, "", &homes, &m.generators);
    if m.kind == PrincipalKind::User && !m.users.is_empty() {
        c.fail("the manifest", "is a user's, but lists users");
    }
    for (user, gens) in &m.users {
        if let Err(why) = check_name(user) {
            c.fail(format!("user {user}"), why);
            continue;
        }
        let home = |generator: &str| vec![format!("{}/{user}/{generator}", layout::USERS_DIR)];
        add(
            &mut c,
            &mut items,
            &format!("{USERS_PREFIX}/{user}/"),
            &home,
            gens,
        );
    }
    c.finish(Plan {
        principal: (m.kind, m.name),
        items,
    })
}

/// The files of `gens` as items at `<prefix><gen>/<file>`; each file's store path must be in
/// one of `homes(gen)`.
fn add(
    c: &mut Checker,
    items: &mut Vec<Item>,
    prefix: &str,
    homes: &dyn Fn(&str) -> Vec<String>,
    gens: &BTreeMap<String, ManifestGenerator>,
) {
    for (generator, g) in gens {
        for (file, f) in &g.files {
            let rel = format!("{prefix}{generator}/{file}");
            let subject = format!("file {rel}");
            if let Some(why) = [check_name(generator), check_file_name(file)]
                .into_iter()
                .find_map(Result::err)
            {
                c.fail(&subject, format!("has a generator or file name that {why}"));
                continue;
            }
            let homes = homes(generator);
            let named = f.path.rsplit_once('/').is_some_and(|(dir, name)| {
                let declared = if f.secret {
                    layout::parse_secret_name(name).map(|(n, _)| n)
                } else {
                    Some(name)
                };
                declared == Some(file.as_str()) && homes.iter().any(|h| h == dir)
            });
            if !named {
                c.fail(
                    &subject,
                    format!(
                        "path {:?} is not {}/{}{}",
                        f.path,
                        homes[0],
                        layout::stored_name(file, f.secret, Backend::Age),
                        if homes.len() > 1 {
                            " or its shared instance's"
                        } else {
                            ""
                        }
                    ),
                );
                continue;
            }
            let mut item = Item {
                rel,
                source: Source::Store(f.path.clone()),
                secret: f.secret,
                owner: f.owner.clone(),
                group: f.group.clone(),
                mode: 0,
                needed_for: f.needed_for,
                restart_units: Vec::new(),
                reload_units: Vec::new(),
                link: None,
            };
            if let Some(mode) = c.common(&subject, &item, &f.mode) {
                item.mode = mode;
            }
            items.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::manifest::parse;
    use super::*;

    fn store_manifest(path: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format": 1, "kind": "machine", "name": "m",
            "generators": { "g": { "files": { "key": {
                "group": "root", "mode": "0400", "needed-for": "services",
                "owner": "root", "path": path, "secret": true
            } } } },
            "users": { "alice": { "h": { "files": { "tok": {
                "group": null, "mode": "0400", "needed-for": "services",
                "owner": "alice", "path": "users/alice/h/tok.age", "secret": true
            } } } } }
        }))
        .unwrap()
    }

    #[test]
    fn a_store_manifest_names_only_its_own_instances_files() {
        for ok in ["machines/m/g/key.age", "shared/g/key.age"] {
            let plan = parse(&store_manifest(ok), true).unwrap();
            let rels: Vec<&str> = plan.items.iter().map(|i| i.rel.as_str()).collect();
            assert_eq!(rels, ["_users/alice/h/tok", "g/key"]);
            assert_eq!(plan.items[1].source, Source::Store(ok.into()));
            assert_eq!(plan.items[0].group, None);
        }
        for bad in [
            "machines/other/g/key.age",
            "machines/m/g/key",
            "machines/m/g/other.age",
            "keys/vault.age",
            "machines/m/g/../../other/g/key.age",
            "users/alice/g/key.age",
        ] {
            let errors = parse(&store_manifest(bad), true).unwrap_err();
            assert!(
                errors[0]
                    .to_string()
                    .contains("is not machines/m/g/key.age"),
                "{bad}: {errors:?}"
            );
        }
    }
}
