//! The in-memory half of `vars install`: load the identities (skipping missing ones, as
//! sops-nix does), read every source the plan names (an install manifest's absolute paths
//! with `O_NOFOLLOW`, a store manifest's paths beneath `--store` without following any link),
//! decrypt them all through [`crate::seal`] in parallel, and render the templates. Every
//! error is collected, not just the first; plaintext lives only in [`SecretBytes`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::Problem;
use super::manifest::{Item, Plan, Source};
use crate::crypto::Identities;
use crate::fs_util::{IoContext as _, IoError};
use crate::seal::Opener;
use crate::secret::SecretBytes;
use crate::store::layout::{self, PrincipalKind};
use crate::store::{Store, StoreError};

/// Largest source read: a stored secret is at most twice the 16 MiB output cap.
const SOURCE_CAP: u64 = crate::sandbox::MAX_OUTPUT_BYTES * 2;

/// The identities that decrypt, and every path tried (for messages).
pub(super) struct Keys {
    opener: Option<Opener>,
    tried: Vec<String>,
}

impl Keys {
    /// Load every `--identity` file that exists. A missing one is skipped (a host may list
    /// keys it does not have); one that cannot be used is skipped with a warning.
    pub(super) fn load(paths: &[PathBuf], warnings: &mut Vec<String>) -> Keys {
        let mut ids = Identities::default();
        let mut tried = Vec::new();
        for p in paths {
            let shown = p.display();
            match std::fs::metadata(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tried.push(format!("{shown} (missing)"));
                    continue;
                }
                _ => {}
            }
            match crate::identity::add_file(&mut ids, p) {
                Ok(()) => tried.push(shown.to_string()),
                Err(e) => {
                    warnings.push(format!("skipping identity {shown}: {e}"));
                    tried.push(format!("{shown} (unusable: {e})"));
                }
            }
        }
        Keys {
            opener: (!ids.is_empty()).then(|| Opener::new(ids)),
            tried,
        }
    }

    fn tried(&self) -> String {
        if self.tried.is_empty() {
            "no --identity given".into()
        } else {
            self.tried.join(", ")
        }
    }
}

/// The plaintext of each of `items` (in their order), or `None` with every problem pushed to
/// `problems`. Files that `items`' templates refer to are opened too, whatever their phase.
pub(super) fn open_all(
    plan: &Plan,
    items: &[&Item],
    store: Option<&Store>,
    keys: &Keys,
    problems: &mut Vec<Problem>,
) -> Option<Vec<SecretBytes>> {
    let mut needed: BTreeSet<&str> = BTreeSet::new();
    for item in items {
        match &item.source {
            Source::Template { placeholders, .. } => {
                needed.extend(placeholders.values().map(String::as_str))
            }
            _ => {
                needed.insert(&item.rel);
            }
        }
    }
    let by_rel: BTreeMap<&str, &Item> = plan.items.iter().map(|i| (i.rel.as_str(), i)).collect();
    let sources: Vec<&Item> = needed
        .iter()
        .filter_map(|r| by_rel.get(r).copied())
        .collect();
    if keys.opener.is_none() && sources.iter().any(|i| i.secret) {
        problems.push(Problem::new(
            "identities",
            format!("none could be loaded; tried {}", keys.tried()),
        ));
    }
    let opened: Vec<Result<SecretBytes, Problem>> = sources
        .par_iter()
        .map(|item| open(item, &plan.principal, store, keys))
        .collect();
    let before = problems.len();
    let mut values: BTreeMap<&str, SecretBytes> = BTreeMap::new();
    for (item, result) in sources.iter().zip(opened) {
        match result {
            Ok(p) => {
                values.insert(&item.rel, p);
            }
            Err(p) => problems.push(p),
        }
    }
    if problems.len() != before || keys.opener.is_none() && sources.iter().any(|i| i.secret) {
        return None;
    }
    Some(
        items
            .iter()
            .map(|item| match &item.source {
                Source::Template {
                    content,
                    placeholders,
                } => render(content, placeholders, &values),
                _ => values[item.rel.as_str()].duplicate(),
            })
            .collect(),
    )
}

/// Where in the store an item's secret may have been written for ([`Opener::open_at`]): a
/// store source names its place itself; an install manifest's item (a Nix store path) is the
/// principal's own instance or a shared one, or for `_users/<u>/…` user `u`'s instance. A
/// ciphertext moved from elsewhere (another user's file, a root-only secret) is refused.
fn locations(principal: &(PrincipalKind, String), item: &Item) -> Vec<String> {
    if let Source::Store(rel) = &item.source
        && let Some((dir, name)) = rel.rsplit_once('/')
    {
        let file = layout::parse_secret_name(name).map_or(name, |(f, _)| f);
        return vec![format!("{dir}/{file}")];
    }
    if let Some(rest) = item.rel.strip_prefix("_users/") {
        return vec![format!("{}/{rest}", layout::USERS_DIR)];
    }
    let own = match principal.0 {
        PrincipalKind::Machine => format!("{}/{}/{}", layout::MACHINES_DIR, principal.1, item.rel),
        PrincipalKind::User => format!("{}/{}/{}", layout::USERS_DIR, principal.1, item.rel),
    };
    vec![own, format!("{}/{}", layout::SHARED_DIR, item.rel)]
}

/// Read one source and decrypt it (a secret) or take it as is (a public file).
fn open(
    item: &Item,
    principal: &(PrincipalKind, String),
    store: Option<&Store>,
    keys: &Keys,
) -> Result<SecretBytes, Problem> {
    let (shown, bytes) = match &item.source {
        Source::Path(p) => (
            p.display().to_string(),
            read_file(p, SOURCE_CAP, false).map_err(|e| e.to_string()),
        ),
        Source::Store(rel) => {
            let store = store.expect("a store manifest comes with --store");
            let bytes = match store.read_rel(rel, SOURCE_CAP) {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err(format!("{} is missing", store.dir.join(rel).display())),
                Err(StoreError::Io(e)) if crate::fs_util::is_link_refused(&e) => Err(format!(
                    "{} is a symbolic link, or a directory on its way is (vars never follows links in the store)",
                    store.dir.join(rel).display()
                )),
                Err(e) => Err(e.to_string()),
            };
            (store.dir.join(rel).display().to_string(), bytes)
        }
        Source::Template { .. } => unreachable!("templates are rendered, not opened"),
    };
    let subject = format!("file {} ({shown})", item.rel);
    let bytes = bytes.map_err(|cause| Problem::new(&subject, cause))?;
    if !item.secret {
        return Ok(SecretBytes::new(bytes));
    }
    let Some(opener) = &keys.opener else {
        // Reported once for all files; nothing to decrypt with.
        return Ok(SecretBytes::new(Vec::new()));
    };
    let accepted = locations(principal, item);
    let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
    opener.open_at(&bytes, &accepted).map_err(|e| {
        Problem::new(
            &subject,
            format!("{e} (identities tried: {})", keys.tried()),
        )
    })
}

/// `content` with each placeholder replaced by the plaintext of the file it names. The
/// buffer is sized first, so no partial copy is left behind by a reallocation.
fn render(
    content: &str,
    placeholders: &BTreeMap<String, String>,
    values: &BTreeMap<&str, SecretBytes>,
) -> SecretBytes {
    let mut hits: Vec<(usize, &str, &SecretBytes)> = Vec::new();
    for (placeholder, rel) in placeholders {
        let value = &values[rel.as_str()];
        hits.extend(
            content
                .match_indices(placeholder.as_str())
                .map(|(at, p)| (at, p, value)),
        );
    }
    hits.sort_by_key(|(at, _, _)| *at);
    // Placeholders never overlap (each starts with `<VARS:` and ends with `:PLACEHOLDER>`).
    let size = hits
        .iter()
        .fold(content.len(), |n, (_, p, v)| n - p.len() + v.len());
    let mut out = SecretBytes::new(Vec::with_capacity(size));
    let mut at = 0;
    for (start, placeholder, value) in hits {
        if start < at {
            continue;
        }
        out.extend_within_capacity(&content.as_bytes()[at..start]);
        out.extend_within_capacity(value.expose());
        at = start + placeholder.len();
    }
    out.extend_within_capacity(&content.as_bytes()[at..]);
    out
}

/// Read the regular file at `path` (a path the person or the Nix module named), at most `cap`
/// bytes; unless `follow`, a link at its last component is refused (a source must be the
/// file itself: a Nix store path).
pub(super) fn read_file(path: &Path, cap: u64, follow: bool) -> Result<Vec<u8>, IoError> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nofollow | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::other(
                    "it is a symbolic link (vars reads sources without following links)",
                )
            } else {
                e
            }
        })
        .at("read", path)?;
    let meta = file.metadata().at("read", path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file")).at("read", path);
    }
    let mut buf = Vec::with_capacity(meta.len().min(cap) as usize + 1);
    file.take(cap + 1).read_to_end(&mut buf).at("read", path)?;
    if buf.len() as u64 > cap {
        return Err(std::io::Error::other(format!("larger than {cap} bytes"))).at("read", path);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_replace_every_placeholder_and_nothing_else() {
        let a = super::super::manifest::placeholder_of("g/a");
        let b = super::super::manifest::placeholder_of("g/b");
        let content = format!("A={a}\nB={b}\nA2={a}\n<VARS:not-ours>\n");
        let placeholders =
            BTreeMap::from([(a.clone(), "g/a".to_owned()), (b.clone(), "g/b".to_owned())]);
        let values = BTreeMap::from([
            ("g/a", SecretBytes::new(b"alpha".to_vec())),
            ("g/b", SecretBytes::new(vec![0, 1, 2])),
        ]);
        let out = render(&content, &placeholders, &values);
        assert_eq!(
            out.expose(),
            b"A=alpha\nB=\x00\x01\x02\nA2=alpha\n<VARS:not-ours>\n"
        );
        assert_eq!(
            out.len(),
            out.capacity(),
            "sized exactly, never reallocated"
        );
        let plain = render("no placeholders", &placeholders, &values);
        assert_eq!(plain.expose(), b"no placeholders");
    }

    #[test]
    fn sources_are_regular_files_never_links() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        std::os::unix::fs::symlink(t.path().join("f"), t.path().join("l")).unwrap();
        assert_eq!(read_file(&t.path().join("f"), 10, false).unwrap(), b"x");
        let err = read_file(&t.path().join("l"), 10, false).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(read_file(&t.path().join("l"), 10, true).unwrap(), b"x");
        assert!(read_file(t.path(), 10, true).is_err());
        assert!(read_file(&t.path().join("f"), 0, false).is_err());
    }
}
