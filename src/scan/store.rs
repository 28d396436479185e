//! The store rules of `vars scan`: what may be committed under the vars store (DESIGN §3),
//! judged from the entries [`super::source`] found and their blobs, with `meta.json` saying
//! what each instance holds. Nothing is decrypted: a secret must be an age file by its header
//! (or, with the sops backend, a sops file by its JSON), its plaintext must not be beside it,
//! nothing undeclared may sit in the store, nothing may be a symlink or submodule, and a
//! public file must match its recorded hash.
//!
//! A file is a secret when its `meta.json` *or* vars.yaml says so: meta.json is part of the
//! untrusted repository, and a meta.json rewritten to call a secret public must not make its
//! plaintext acceptable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use crate::meta::Meta;
use crate::model::{Config, Generator, shipped};
use crate::spec::Backend;
use crate::store::{is_leftover, layout};

use super::Rule;
use super::source::{Content, Entry, EntryKind};

/// What the store rules need from the declarations.
pub(super) struct StoreSpec {
    /// The store directory, absolute and lexically normalised.
    pub dir: std::path::PathBuf,
    /// `settings.backend`.
    pub backend: Backend,
    /// Generator → the files vars.yaml (or, for a shipped generator without a local
    /// definition, its shipped definition) declares secret. Keyed by generator, not instance:
    /// a file is secret in every instance of its generator, also one vars.yaml does not
    /// declare (a machine removed, or an instance committed by hand with a meta.json calling
    /// the secret public: review 2, finding 9; of a shipped generator no machine uses:
    /// review 3).
    pub declared_secret: BTreeMap<String, BTreeSet<String>>,
}

impl StoreSpec {
    /// From validated declarations; `root` is the canonical directory of vars.yaml.
    pub fn new(config: &Config, root: &Path) -> StoreSpec {
        let rel = config
            .store_dir
            .strip_prefix(&config.root)
            .unwrap_or(&config.store_dir);
        let mut declared_secret: BTreeMap<String, BTreeSet<String>> = config
            .generators
            .iter()
            .map(|(name, g)| (name.clone(), secret_files(g)))
            .collect();
        // A shipped generator the fleet does not use (removed from vars.yaml, or an instance
        // committed by hand) still says which of its files are secret (review 3): only a
        // local definition of the same name replaces what it says.
        for (name, secret) in SHIPPED_SECRET.iter() {
            declared_secret
                .entry(name.clone())
                .or_insert_with(|| secret.clone());
        }
        StoreSpec {
            dir: super::source::lexical(&root.join(rel)),
            backend: config.backend,
            declared_secret,
        }
    }
}

/// The files of `g` that are secret.
fn secret_files(g: &Generator) -> BTreeSet<String> {
    let secret = g.files.iter().filter(|(_, f)| f.secret);
    secret.map(|(n, _)| n.clone()).collect()
}

/// Shipped generator → its secret files. The shipped definitions are validated by their own
/// tests (`vars generators`); were one invalid, the fleet's own declarations would still
/// apply.
static SHIPPED_SECRET: LazyLock<BTreeMap<String, BTreeSet<String>>> = LazyLock::new(|| {
    shipped::all()
        .unwrap_or_default()
        .iter()
        .map(|g| (g.name.clone(), secret_files(g)))
        .collect()
});

/// One store finding: which entry, which rule, why.
pub(super) struct StoreFinding {
    pub entry: usize,
    pub rule: Rule,
    pub message: String,
}

/// The entries (indices) below the store directory, including the directory itself.
pub(super) fn entries_in_store(spec: &StoreSpec, entries: &[Entry]) -> Vec<usize> {
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.abs.starts_with(&spec.dir))
        .map(|(i, _)| i)
        .collect()
}

/// An instance directory's `meta.json` entry (if any) and its other files (entry, name).
type InstanceFiles = (Option<usize>, Vec<(usize, String)>);

/// Judge the store entries `idx`, whose contents were read into `content`.
pub(super) fn check(
    spec: &StoreSpec,
    entries: &[Entry],
    idx: &[usize],
    content: &BTreeMap<usize, Content>,
) -> Vec<StoreFinding> {
    let mut out = Vec::new();
    let mut push = |entry: usize, rule: Rule, message: String| {
        out.push(StoreFinding {
            entry,
            rule,
            message,
        })
    };
    let bytes = |i: usize| match content.get(&i) {
        Some(Content::Bytes(b)) => Some(b.as_slice()),
        _ => None,
    };
    // Instance directory → (meta.json entry, its files).
    let mut instances: BTreeMap<String, InstanceFiles> = BTreeMap::new();
    for &i in idx {
        let e = &entries[i];
        let rel = e
            .abs
            .strip_prefix(&spec.dir)
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default();
        if e.kind != EntryKind::File {
            let what = match e.kind {
                EntryKind::Symlink => "a symlink",
                EntryKind::Submodule => "a submodule",
                _ => "not a regular file",
            };
            push(
                i,
                Rule::StoreNotRegular,
                format!("{what} in the store: vars never writes one and never follows one"),
            );
            continue;
        }
        if rel.is_empty() {
            push(
                i,
                Rule::StoreNotRegular,
                "the store itself is a file".into(),
            );
            continue;
        }
        if rel.split('/').any(is_leftover) {
            push(
                i,
                Rule::StoreLeftover,
                "a leftover of an interrupted vars run (a spare, temporary file, .D.old or \
                 .D.removing): vars keeps these out of git, so this was committed by hand"
                    .into(),
            );
            continue;
        }
        if let Some(b) = bytes(i)
            && b.starts_with(b"version https://git-lfs.github.com/spec/v1")
        {
            push(
                i,
                Rule::StoreLfsPointer,
                "a Git LFS pointer: the real file is not in the repository".into(),
            );
            continue;
        }
        let (dir, name) = match rel.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", rel.as_str()),
        };
        // vars' own .gitignore, and the (empty) lock file it ignores, which a scan of files
        // on disk (a flake check) sees.
        if dir.is_empty()
            && (name == ".gitignore" || (name == ".lock" && bytes(i).is_some_and(<[u8]>::is_empty)))
        {
            continue;
        }
        if dir == layout::KEYS_DIR {
            let key = crate::store::KeyFile::ALL
                .into_iter()
                .find(|k| k.name() == name);
            if key.is_some_and(|k| !k.is_encrypted()) {
                continue;
            }
            if key.is_some_and(|k| k.is_encrypted()) {
                if let Some(why) = bytes(i).and_then(not_age) {
                    push(i, Rule::StoreNotAge, format!("the vault key file {why}"));
                }
                continue;
            }
        }
        if name == layout::MANIFEST_FILE && is_principal_dir(dir) {
            continue;
        }
        if layout::parse_instance_rel(dir).is_some() {
            let slot = instances.entry(dir.to_owned()).or_default();
            if name == layout::META_FILE {
                slot.0 = Some(i);
            } else {
                slot.1.push((i, name.to_owned()));
            }
            continue;
        }
        push(
            i,
            Rule::StoreUndeclaredFile,
            "not a file vars writes at this place in the store".into(),
        );
    }
    for (dir, (meta_entry, files)) in instances {
        let meta = match meta_entry.map(|m| (m, bytes(m))) {
            None => {
                for (i, _) in files {
                    push(
                        i,
                        Rule::StoreUndeclaredFile,
                        format!(
                            "the instance {dir} has no meta.json, so nothing in it is declared"
                        ),
                    );
                }
                continue;
            }
            Some((m, b)) => match b.map(serde_json::from_slice::<Meta>) {
                Some(Ok(meta)) => meta,
                _ => {
                    push(
                        m,
                        Rule::StoreUndeclaredFile,
                        "meta.json is not valid, so nothing in this instance is declared".into(),
                    );
                    for (i, _) in files {
                        push(
                            i,
                            Rule::StoreUndeclaredFile,
                            format!(
                                "the meta.json of {dir} is not valid, so nothing in it is declared"
                            ),
                        );
                    }
                    continue;
                }
            },
        };
        let declared =
            layout::parse_instance_rel(&dir).and_then(|id| spec.declared_secret.get(&id.generator));
        let is_secret = |f: &str| {
            meta.files.get(f).is_some_and(|m| m.secret) || declared.is_some_and(|d| d.contains(f))
        };
        for (i, name) in files {
            let b = bytes(i);
            if let Some((file, backend)) = layout::parse_secret_name(&name)
                && is_secret(file)
            {
                if backend != spec.backend {
                    push(
                        i,
                        Rule::StoreUndeclaredFile,
                        format!(
                            "a {} file, but the store's backend is {}",
                            layout::secret_suffix(backend),
                            backend_name(spec.backend)
                        ),
                    );
                    continue;
                }
                let problem = match (backend, b) {
                    (_, None) => Some("is too large to be a vars secret".to_owned()),
                    (Backend::Age, Some(b)) => not_age(b),
                    (Backend::Sops, Some(b)) => not_sops(b),
                };
                if let Some(why) = problem {
                    let rule = match backend {
                        Backend::Age => Rule::StoreNotAge,
                        Backend::Sops => Rule::StoreNotSops,
                    };
                    push(i, rule, format!("the secret {file} {why}"));
                }
                continue;
            }
            if is_secret(&name) {
                push(
                    i,
                    Rule::StorePlaintextSecret,
                    format!(
                        "{name} is declared secret: only {} may be committed",
                        layout::stored_name(&name, true, spec.backend)
                    ),
                );
                continue;
            }
            match meta.files.get(&name) {
                Some(m) => {
                    if let (Some(want), Some(b)) = (&m.sha256, b)
                        && crate::meta::sha256(b) != *want
                    {
                        push(
                            i,
                            Rule::StorePublicHash,
                            "its content differs from the sha256 in meta.json".into(),
                        );
                    }
                }
                None => push(
                    i,
                    Rule::StoreUndeclaredFile,
                    format!("meta.json of {dir} does not declare it"),
                ),
            }
        }
    }
    out
}

/// `machines/<m>` or `users/<u>`: where manifests live.
fn is_principal_dir(dir: &str) -> bool {
    matches!(dir.split_once('/'), Some((kind, name))
        if (kind == layout::MACHINES_DIR || kind == layout::USERS_DIR)
            && crate::model::check_name(name).is_ok())
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Age => "age",
        Backend::Sops => "sops",
    }
}

/// Why `bytes` are not an age file, if they are not: the exact header line (age rejects
/// leading whitespace), and a header that parses, without any identity.
fn not_age(bytes: &[u8]) -> Option<String> {
    if !(bytes.starts_with(b"age-encryption.org/v1\n")
        || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"))
    {
        return Some("does not start with an age header".into());
    }
    match crate::crypto::header_stanzas(bytes) {
        Ok(stanzas) if !stanzas.is_empty() => None,
        Ok(_) => Some("has an age header without recipients".into()),
        Err(_) => Some("has a damaged age header".into()),
    }
}

static SOPS_DATA: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"^ENC\[AES256_GCM,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]+,tag:[A-Za-z0-9+/=]+,type:str\]$",
    )
    .expect("the sops data regex is valid")
});

/// Why `bytes` are not a sops binary-format file, if they are not.
fn not_sops(bytes: &[u8]) -> Option<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Some("is not sops JSON".into());
    };
    let sops = &v["sops"];
    if !sops["mac"].is_string() {
        return Some("has no sops.mac".into());
    }
    if sops["age"].as_array().is_none_or(|a| a.is_empty()) {
        return Some("has no age recipients in sops.age".into());
    }
    if !v["data"].as_str().is_some_and(|d| SOPS_DATA.is_match(d)) {
        return Some("has a data value that is not sops ciphertext".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_what_the_store_keeps_out_of_git() {
        let t = tempfile::tempdir().unwrap();
        drop(crate::store::Store::new(t.path()).lock().unwrap());
        let ignore = std::fs::read_to_string(t.path().join(".gitignore")).unwrap();
        let patterns: Vec<&str> = ignore
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty() && *l != ".lock")
            .collect();
        assert!(patterns.len() >= 4, "{ignore}");
        for p in patterns {
            for fill in ["", "x", "g", "ssh-host.key"] {
                let name = p.replace('*', fill);
                assert!(is_leftover(&name), "{name} (from {p:?})");
            }
        }
        for ok in [
            "meta.json",
            "key.age",
            "old",
            "g.old",
            "key.removing",
            ".vars-swap",
            "vars-tmp-1",
        ] {
            assert!(!is_leftover(ok), "{ok}");
        }
    }

    #[test]
    fn sops_files_are_checked_by_shape() {
        let good = br#"{"data":"ENC[AES256_GCM,data:AAAA,iv:BBBB,tag:CCCC,type:str]","sops":{"mac":"ENC[x]","age":[{"recipient":"age1x","enc":"y"}],"version":"3.11.0"}}"#;
        assert_eq!(not_sops(good), None);
        let plain = br#"{"data":"hunter2","sops":{"mac":"m","age":[{}]}}"#;
        assert!(not_sops(plain).unwrap().contains("not sops ciphertext"));
        assert!(not_sops(b"hunter2").is_some());
        assert!(not_sops(br#"{"data":"x","sops":{"mac":"m","age":[]}}"#).is_some());
    }

    #[test]
    fn age_files_need_the_exact_header() {
        assert!(not_age(b" age-encryption.org/v1\n").is_some());
        assert!(not_age(b"AGE-SECRET-KEY-1\n").is_some());
        assert!(not_age(b"age-encryption.org/v1\n--- abc\n").is_some());
        let (_, recipient) = crate::crypto::new_identity();
        let r = crate::crypto::Recipient::parse(&recipient).unwrap();
        let ct = crate::crypto::encrypt(
            &crate::secret::SecretBytes::new(b"x".to_vec()),
            &[&r],
            false,
        )
        .unwrap();
        assert_eq!(not_age(&ct), None);
    }
}
