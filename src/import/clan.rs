//! `vars import clan DIR`: a clan repository's vars, as clan's sops backend stores them
//! (`clan-core`: `clan_lib/vars/secret_modules/sops.py`, `clan_cli/secrets/`):
//!
//! ```text
//! vars/per-machine/<m>/<gen>/<file>/secret      sops binary file (a secret)
//! vars/per-machine/<m>/<gen>/<file>/value       the bytes (a public file)
//! vars/per-machine/<m>/<gen>/<file>/machines/<m>  link: machine m reads it (absent: deploy = false)
//! vars/per-machine/<m>/<gen>/<file>/users/<u>     link: user u (an admin) reads it
//! vars/per-machine/<m>/<gen>/<file>/groups/<g>    link: the machines and users of sops/groups/<g>
//! vars/shared/<gen>/<file>/…                       the same, one value for every machine
//! sops/machines/<m>/key.json, sops/users/<u>/key.json   {"publickey": "age1…", "type": "age"}
//! ```
//!
//! Everything is read beneath DIR without following a link: the links under `machines/`,
//! `users/` and `groups/` are read by name only. Secrets are decrypted in memory with the
//! admin's age identity (clan keeps it in `~/.config/sops/age/keys.txt`, which
//! [`super::identities`] also loads). A per-machine generator becomes a vars generator assigned
//! to each of those machines; a shared one a `share: true` generator assigned to the machines
//! that read it. `secret` vs `value` and `deploy = false` are kept; clan's `.validation-hash`
//! is not (vars' validation comes from the generator, which has none).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{
    Builder, Candidate, CandidateFile, CandidateInstance, ImportError, ImportPlan, Readers,
    Severity, Source,
};
use crate::crypto::Identities;
use crate::fs_util::{Dir, Kind};
use crate::model::Config;
use crate::recipients::Principal;
use crate::secret::SecretBytes;
use crate::sops::file::SopsFile;

/// The largest `secret` or `value` read.
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// One file of a clan generator as found.
struct Found {
    secret: bool,
    value: SecretBytes,
    machines: BTreeSet<String>,
    users: BTreeSet<String>,
}

/// The names of the entries of `dir/rel`, if it is a directory (links are named, not followed).
fn names(dir: &Dir, rel: &str) -> Result<Vec<String>, ImportError> {
    let Some(d) = dir.open_dir(rel).ok().flatten() else {
        return Ok(Vec::new());
    };
    Ok(d.entries()?
        .into_iter()
        .filter_map(|e| e.name_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect())
}

/// Sub-directories of `dir` (real directories only).
fn subdirs(dir: &Dir) -> Result<Vec<String>, ImportError> {
    Ok(dir
        .entries()?
        .into_iter()
        .filter(|e| e.kind == Kind::Dir)
        .filter_map(|e| e.name_str().map(str::to_owned))
        .filter(|n| !n.starts_with('.'))
        .collect())
}

/// Plan the import of the clan repository at `dir`.
pub fn plan(config: &Config, dir: &Path, ids: &Identities) -> Result<ImportPlan, ImportError> {
    let root = Dir::open(dir)?;
    let vars = root.open_dir("vars")?.ok_or_else(|| ImportError::Source {
        path: dir.join("vars"),
        reason: "does not exist: name the clan repository (the directory with vars/ and sops/)"
            .into(),
    })?;
    let mut b = Builder::new(config, Source::Clan);
    // sops/groups/<g>/{machines,users}/<name>: who a group link stands for.
    let mut groups: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    if let Some(g) = root.open_dir("sops/groups")? {
        for name in subdirs(&g)? {
            let machines = names(&g, &format!("{name}/machines"))?;
            let users = names(&g, &format!("{name}/users"))?;
            groups.insert(name, (machines, users));
        }
    }
    let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
    for placement in vars.entries()? {
        let Some(pname) = placement.name_str().map(str::to_owned) else {
            continue;
        };
        match (pname.as_str(), placement.kind) {
            ("per-machine", Kind::Dir) => {
                let pm = vars.open_dir("per-machine")?.expect("listed");
                for machine in subdirs(&pm)? {
                    let mdir = pm.open_dir(&machine)?.expect("listed");
                    for generator in subdirs(&mdir)? {
                        let gdir = mdir.open_dir(&generator)?.expect("listed");
                        let origin = format!("vars/per-machine/{machine}/{generator}");
                        collect(
                            &mut b,
                            &mut candidates,
                            &gdir,
                            &generator,
                            &origin,
                            Some(&machine),
                            &groups,
                            ids,
                        )?;
                    }
                }
            }
            ("shared", Kind::Dir) => {
                let sh = vars.open_dir("shared")?.expect("listed");
                for generator in subdirs(&sh)? {
                    let gdir = sh.open_dir(&generator)?.expect("listed");
                    let origin = format!("vars/shared/{generator}");
                    collect(
                        &mut b,
                        &mut candidates,
                        &gdir,
                        &generator,
                        &origin,
                        None,
                        &groups,
                        ids,
                    )?;
                }
            }
            ("per-export", _) => b.finding(
                Severity::Note,
                "vars/per-export",
                "clan exports have no vars equivalent: not imported",
            ),
            (other, _) if !other.starts_with('.') => b.finding(
                Severity::Note,
                format!("vars/{other}"),
                "is not a clan vars placement vars knows: not imported",
            ),
            _ => {}
        }
    }
    key_notes(&mut b, config, &root)?;
    for (_, c) in candidates {
        b.add(c);
    }
    b.finish()
}

/// Read one generator directory (`…/<gen>/`) of a machine (or shared) into its candidate.
#[allow(clippy::too_many_arguments)]
fn collect(
    b: &mut Builder<'_>,
    candidates: &mut BTreeMap<String, Candidate>,
    gdir: &Dir,
    generator: &str,
    origin: &str,
    machine: Option<&str>,
    groups: &BTreeMap<String, (Vec<String>, Vec<String>)>,
    ids: &Identities,
) -> Result<(), ImportError> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for file in subdirs(gdir)? {
        let fdir = gdir.open_dir(&file)?.expect("listed");
        let subject = format!("{origin}/{file}");
        let kind = |name: &str| fdir.kind(name).ok().flatten();
        let (secret, value) = match (kind("secret"), kind("value")) {
            (Some(Kind::File), None) => {
                let bytes = fdir.read_capped("secret", MAX_FILE)?.unwrap_or_default();
                let plain = SopsFile::parse_binary(&bytes).and_then(|f| {
                    let key = f.data_key(ids)?;
                    f.decrypt_binary(&key)
                });
                match plain {
                    Ok(p) => (true, p),
                    Err(e) => {
                        b.finding(
                            Severity::Unreadable,
                            &subject,
                            format!("{e}; the instance is left out"),
                        );
                        return Ok(());
                    }
                }
            }
            (None, Some(Kind::File)) => (
                false,
                SecretBytes::new(fdir.read_capped("value", MAX_FILE)?.unwrap_or_default()),
            ),
            _ => {
                b.finding(
                    Severity::Unreadable,
                    &subject,
                    "holds neither exactly a secret nor a value file; the instance is left out",
                );
                return Ok(());
            }
        };
        let mut machines: BTreeSet<String> = names(&fdir, "machines")?.into_iter().collect();
        let mut users: BTreeSet<String> = names(&fdir, "users")?.into_iter().collect();
        for g in names(&fdir, "groups")? {
            match groups.get(&g) {
                Some((ms, us)) => {
                    machines.extend(ms.iter().cloned());
                    users.extend(us.iter().cloned());
                }
                None => b.finding(
                    Severity::Loss,
                    &subject,
                    format!(
                        "group {} has no sops/groups/ entry: its members lose access",
                        crate::text::escape(&g)
                    ),
                ),
            }
        }
        found.insert(
            file,
            Found {
                secret,
                value,
                machines,
                users,
            },
        );
    }
    if found.is_empty() {
        return Ok(());
    }
    let c = candidates
        .entry(generator.to_owned())
        .or_insert_with(|| Candidate {
            raw_name: generator.to_owned(),
            origin: format!("clan generator {generator}"),
            share: Some(machine.is_none()),
            files: Vec::new(),
            instances: Vec::new(),
        });
    if c.share != Some(machine.is_none()) {
        b.finding(
            Severity::Unreadable,
            origin,
            format!(
                "generator {generator} is both shared and per-machine; this instance is left out"
            ),
        );
        return Ok(());
    }
    let mut values = Vec::new();
    let mut all_machines = BTreeSet::new();
    let mut all_users = BTreeSet::new();
    for (file, f) in found {
        match c.files.iter_mut().find(|cf| cf.raw_name == file) {
            Some(cf) if cf.secret != f.secret => {
                return Err(ImportError::Source {
                    path: origin.into(),
                    reason: format!("{file} is a secret in one machine and public in another"),
                });
            }
            Some(cf) => {
                if f.secret && !f.machines.is_empty() {
                    cf.deploy = None;
                }
            }
            None => c.files.push(CandidateFile {
                raw_name: file.clone(),
                secret: f.secret,
                // clan deploys a secret to the machines linked under machines/; none: deploy = false.
                deploy: (f.secret && f.machines.is_empty()).then_some(false),
                origin: format!("{generator}/{file}"),
                reference: format!(
                    "config.clan.core.vars.generators.{generator}.files.{file}.path"
                ),
            }),
        }
        all_machines.extend(f.machines);
        all_users.extend(f.users);
        values.push((file, f.value));
    }
    let readers = match machine {
        Some(m) => {
            for other in all_machines.iter().filter(|x| *x != m) {
                b.finding(
                    Severity::Loss,
                    origin,
                    format!("machine {} could read this machine's var in clan; in vars it reads only its own", crate::text::escape(other)),
                );
            }
            Readers::Machine(m.to_owned())
        }
        None => Readers::Named {
            machines: all_machines.into_iter().collect(),
            users: all_users.iter().cloned().collect(),
        },
    };
    if machine.is_some() {
        for u in &all_users {
            if !b.config_is_admin(u) {
                b.finding(
                    Severity::Loss,
                    origin,
                    format!("user {} could read it in clan; in vars only admins (through the vault) and its machine do", crate::text::escape(u)),
                );
            }
        }
    }
    c.instances.push(CandidateInstance {
        readers,
        values,
        origin: origin.to_owned(),
    });
    Ok(())
}

/// Notes on clan's machine age keys (`sops/machines/<m>/key.json`) that are not among the
/// machine's recipients in vars.yaml: the host must be able to decrypt with a vars recipient.
fn key_notes(b: &mut Builder<'_>, config: &Config, root: &Dir) -> Result<(), ImportError> {
    let Some(dir) = root.open_dir("sops/machines")? else {
        return Ok(());
    };
    for m in subdirs(&dir)? {
        if !config.machines.contains_key(&m) {
            continue;
        }
        let Some(bytes) = dir.read_capped(format!("{m}/key.json"), 1024 * 1024)? else {
            continue;
        };
        let keys: Vec<String> = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i["publickey"].as_str().map(str::to_owned))
                .collect(),
            Ok(v) => v["publickey"]
                .as_str()
                .map(str::to_owned)
                .into_iter()
                .collect(),
            Err(_) => Vec::new(),
        };
        let ours = keys
            .iter()
            .any(|k| b.matcher.owners(k).contains(&Principal::Machine(m.clone())));
        if !keys.is_empty() && !ours {
            b.finding(
                Severity::Note,
                format!("sops/machines/{m}/key.json"),
                format!(
                    "clan's age key of {m} is not among machines.{m}.recipients in vars.yaml: vars encrypts to those (e.g. the ssh host key); to keep decrypting with clan's key, add its recipient {} there (the host has its private half in /var/lib/sops-nix/key.txt, which vars.identityPaths can name)",
                    keys[0]
                ),
            );
        }
    }
    Ok(())
}
