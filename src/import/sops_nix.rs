//! `vars import sops-nix FILE…`: sops files as sops-nix uses them. Each file becomes one
//! generator (named after the file, or `--generator NAME` for a single file); each string
//! value a file of it: the value at `a: {b: …}` is sops-nix's secret `a/b` and vars' file
//! `a.b`. A binary-format file (`format = "binary"`) is one file named after it.
//!
//! Values are decrypted in memory ([`crate::sops::file`]: MAC checked, as `sops decrypt` does).
//! What sops-nix itself refuses or cannot address is listed and skipped: values that are not
//! strings, items of lists. Values sops leaves unencrypted (`unencrypted_suffix`,
//! `unencrypted_regex`, …) become public files. The readers come from the file's `sops.age`
//! recipients, mostly ssh-to-age forms of host keys, matched back to the machines of vars.yaml;
//! pgp and KMS keys cannot be carried over. For recipients nobody declares, the names of their
//! `&anchors` in a `.sops.yaml` near the file are suggested as machines or users.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    Builder, Candidate, CandidateFile, CandidateInstance, ImportError, ImportPlan, Readers,
    Severity, Source,
};
use crate::crypto::Identities;
use crate::model::Config;
use crate::sops::file::{Format, SopsFile};

/// The `&anchor`s of `age1…` keys in the nearest `.sops.yaml` above `file`: recipient → name.
fn anchors(file: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let start = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let re = regex::Regex::new(r#"&([A-Za-z0-9_.-]+)\s+['"]?(age1[0-9a-z]{58})"#).expect("valid");
    for dir in start.ancestors().skip(1).take(12) {
        for name in [".sops.yaml", ".sops.yml"] {
            let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
                continue;
            };
            for cap in re.captures_iter(&text) {
                out.entry(cap[2].to_owned())
                    .or_insert_with(|| cap[1].to_owned());
            }
            return out;
        }
    }
    out
}

/// A machine or user name from a `.sops.yaml` anchor (`server_nosaxa` → `nosaxa`).
fn anchor_name(anchor: &str) -> (Option<&'static str>, String) {
    for (prefix, kind) in [
        ("server_", Some("machines")),
        ("host_", Some("machines")),
        ("machine_", Some("machines")),
        ("admin_", Some("users")),
        ("user_", Some("users")),
    ] {
        if let Some(rest) = anchor.strip_prefix(prefix) {
            return (kind, rest.to_owned());
        }
    }
    (None, anchor.to_owned())
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => Some(Format::Yaml),
        Some("json") => Some(Format::Json),
        _ => None,
    }
}

/// Plan the import of sops files. `generator` names the generator of a single file.
pub fn plan(
    config: &Config,
    files: &[PathBuf],
    generator: Option<&str>,
    ids: &Identities,
) -> Result<ImportPlan, ImportError> {
    if generator.is_some() && files.len() != 1 {
        return Err(ImportError::Source {
            path: PathBuf::from("--generator"),
            reason: "names the generator of one file: import the files one at a time".into(),
        });
    }
    let mut b = Builder::new(config, Source::SopsNix);
    for path in files {
        let shown = path.display().to_string();
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if matches!(ext, "env" | "ini") {
            b.finding(
                Severity::Unreadable,
                &shown,
                format!("vars reads sops YAML, JSON and binary files, not {ext}: not imported"),
            );
            continue;
        }
        let bytes = crate::fs_util::read(path)?;
        let parsed = match format_of(path) {
            Some(f) => SopsFile::parse(&bytes, f),
            None => SopsFile::parse_binary(&bytes),
        };
        let file = parsed.map_err(|e| ImportError::Source {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let leaves = match file.data_key(ids).and_then(|k| file.decrypt(&k)) {
            Ok(l) => l,
            Err(e) => {
                b.finding(Severity::Unreadable, &shown, e.to_string());
                continue;
            }
        };
        for kind in file.other_keys() {
            b.finding(
                Severity::Loss,
                &shown,
                format!("a {kind} key can read it in sops; vars encrypts to age and ssh recipients only: it loses access"),
            );
        }
        let recipients: Vec<String> = file
            .age_recipients()
            .iter()
            .map(|r| r.to_string())
            .collect();
        let names = anchors(path);
        for r in &recipients {
            if b.matcher.owners(r).is_empty()
                && let Some(anchor) = names.get(r)
            {
                let (kind, name) = anchor_name(anchor);
                b.suggest(format!(
                    "{}.{name}.recipients: [\"{r}\"]   # .sops.yaml &{anchor}; or the host's ssh-ed25519 key, whose age form this is",
                    kind.unwrap_or("machines (or users)")
                ));
            }
        }
        let binary = format_of(path).is_none();
        let mut cfiles = Vec::new();
        let mut values = Vec::new();
        for leaf in leaves {
            let key = leaf.path.join("/");
            if leaf.in_list {
                b.finding(
                    Severity::Note,
                    format!("{shown}: {key}"),
                    "is an item of a list, which sops-nix cannot name: skipped",
                );
                continue;
            }
            if leaf.kind != "str" {
                b.finding(
                    Severity::Note,
                    format!("{shown}: {key}"),
                    format!(
                        "is a {} value, not a string (sops-nix refuses those): skipped",
                        leaf.kind
                    ),
                );
                continue;
            }
            let (raw, reference) = if binary {
                (
                    stem.clone(),
                    format!(
                        "config.sops.secrets.<name>.path  (sopsFile = …/{shown}, format = \"binary\")"
                    ),
                )
            } else {
                (
                    leaf.path.join("."),
                    format!("config.sops.secrets.\"{key}\".path"),
                )
            };
            cfiles.push(CandidateFile {
                raw_name: raw.clone(),
                secret: leaf.encrypted,
                deploy: None,
                origin: if binary {
                    shown.clone()
                } else {
                    format!("{shown}: {key}")
                },
                reference,
            });
            values.push((raw, leaf.value));
        }
        if cfiles.is_empty() {
            b.finding(
                Severity::Note,
                &shown,
                "holds no string value: nothing to import from it",
            );
            continue;
        }
        b.add(Candidate {
            raw_name: generator.map(str::to_owned).unwrap_or(stem),
            origin: shown.clone(),
            share: None,
            files: cfiles,
            instances: vec![CandidateInstance {
                readers: Readers::Recipients(recipients),
                values,
                origin: shown,
            }],
        });
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_names_lose_their_role_prefix() {
        assert_eq!(
            anchor_name("server_nosaxa"),
            (Some("machines"), "nosaxa".into())
        );
        assert_eq!(anchor_name("admin_alice"), (Some("users"), "alice".into()));
        assert_eq!(anchor_name("laptop"), (None, "laptop".into()));
    }
}
