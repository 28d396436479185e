//! Validating `scan.allow` in vars.yaml: every entry names a path glob or a fingerprint, only
//! content rules, and a reason. [`crate::scan`] applies the result; store rules cannot be
//! allowed, because a store that is wrong is never a false positive.

use std::path::Path;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::fs_util;
use crate::scan::Rule;
use crate::spec::{self, Loc};

use super::ConfigError;
use super::validate::Validator;

/// A file holding only a `scan:` section, for a repository that has no vars.yaml of its own
/// (`vars scan --allow-file FILE`); the section can move into a vars.yaml unchanged.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanFile {
    scan: spec::ScanSpec,
}

/// Read and validate a file holding only `scan:`.
pub fn load_scan_file(path: &Path) -> Result<ScanConfig, ConfigError> {
    let text = fs_util::read_to_string(path)?;
    let mut v = Validator::default();
    let Some(file) = v.parse::<ScanFile>(path, &text) else {
        return Err(ConfigError::Invalid(Diagnostics(v.diags)));
    };
    let scan = validate(&mut v, path, &text, &file.scan);
    if v.diags.is_empty() {
        Ok(scan)
    } else {
        Err(ConfigError::Invalid(Diagnostics(v.diags)))
    }
}

/// The validated `scan:` section.
#[derive(Debug, Clone, Default)]
pub struct ScanConfig {
    /// `scan.allow`, in file order.
    pub allow: Vec<AllowRule>,
}

/// One validated `scan.allow` entry: a finding is allowed when it matches every condition
/// given.
#[derive(Debug, Clone)]
pub struct AllowRule {
    /// The glob as written, matched against repository-relative paths.
    pub path: Option<String>,
    /// The compiled glob (`*` stays within a directory, `**` spans directories).
    pub glob: Option<globset::GlobMatcher>,
    /// Only these rules; empty means every content rule.
    pub rules: Vec<Rule>,
    /// One finding's fingerprint (`sha256:<64 hex>`).
    pub fingerprint: Option<String>,
    /// Why it is allowed.
    pub reason: String,
    /// Line of the entry in vars.yaml, for messages.
    pub line: u64,
}

/// Check each entry, reporting problems to `v`; entries with problems are left out.
pub(super) fn validate(
    v: &mut Validator,
    file: &Path,
    src: &str,
    scan: &spec::ScanSpec,
) -> ScanConfig {
    let mut allow = Vec::new();
    for entry in &scan.allow {
        let before = v.diags.len();
        let e = &entry.value;
        let diag = |v: &mut Validator, line: u64, column: u64, msg: String, hint: &str| {
            v.push(Diagnostic::at(file, src, line, column, msg).hint(hint));
        };
        if e.path.is_none() && e.fingerprint.is_none() {
            diag(
                v,
                entry.line,
                entry.column,
                "a scan.allow entry needs a path or a fingerprint".into(),
                "add path: \"testdata/keys/**\" or the fingerprint vars scan printed",
            );
        }
        if e.reason.value.trim().is_empty() {
            diag(
                v,
                e.reason.line,
                e.reason.column,
                "the reason of a scan.allow entry is empty".into(),
                "say why this is not a leak, e.g. reason: test-only keys, public on purpose",
            );
        }
        let glob = e.path.as_ref().and_then(|p| compile_glob(v, file, src, p));
        let mut rules = Vec::new();
        for r in &e.rules {
            match Rule::from_id(&r.value) {
                Some(rule) if !rule.is_store_rule() => rules.push(rule),
                Some(_) => diag(
                    v,
                    r.line,
                    r.column,
                    format!("store rule {:?} cannot be allowed", r.value),
                    "a store rule means the store itself is wrong: fix the store (vars check, vars generate)",
                ),
                None => diag(
                    v,
                    r.line,
                    r.column,
                    format!("unknown scan rule {:?}", r.value),
                    &format!(
                        "content rules are: {}",
                        Rule::ALL
                            .iter()
                            .filter(|r| !r.is_store_rule())
                            .map(|r| r.id())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            }
        }
        if let Some(f) = &e.fingerprint
            && !is_fingerprint(&f.value)
        {
            diag(
                v,
                f.line,
                f.column,
                format!("fingerprint {:?} is not sha256:<64 hex digits>", f.value),
                "copy the fingerprint from vars scan --json or the human output",
            );
        }
        if v.diags.len() == before {
            allow.push(AllowRule {
                path: e.path.as_ref().map(|p| p.value.clone()),
                glob,
                rules,
                fingerprint: e.fingerprint.as_ref().map(|f| f.value.clone()),
                reason: e.reason.value.clone(),
                line: entry.line,
            });
        }
    }
    ScanConfig { allow }
}

fn compile_glob(
    v: &mut Validator,
    file: &Path,
    src: &str,
    p: &Loc<String>,
) -> Option<globset::GlobMatcher> {
    let problem = if p.value.starts_with('/') || p.value.split('/').any(|c| c == "..") {
        Some("must be relative to the repository root, without \"..\"".to_owned())
    } else {
        match globset::GlobBuilder::new(&p.value)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
        {
            Ok(g) => return Some(g.compile_matcher()),
            Err(e) => Some(e.kind().to_string()),
        }
    };
    if let Some(problem) = problem {
        v.push(
            Diagnostic::at(
                file,
                src,
                p.line,
                p.column,
                format!("path glob {:?} {problem}", p.value),
            )
            .hint("write a glob over repository-relative paths, e.g. \"testdata/keys/**\""),
        );
    }
    None
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl AllowRule {
    /// Whether this entry allows a finding of `rule` at `path` with `fingerprint`.
    pub fn allows(&self, rule: Rule, path: &str, fingerprint: &str) -> bool {
        !rule.is_store_rule()
            && (self.rules.is_empty() || self.rules.contains(&rule))
            && self.glob.as_ref().is_none_or(|g| g.is_match(path))
            && self.fingerprint.as_deref().is_none_or(|f| f == fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(scan: &str) -> Result<ScanConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scan.yaml");
        std::fs::write(&file, format!("# allowlist\nscan:\n{scan}")).unwrap();
        load_scan_file(&file).map_err(|e| {
            e.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
    }

    #[test]
    fn a_vars_yaml_carries_the_same_section() {
        let fleet =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fleets/darwin2");
        let text = std::fs::read_to_string(fleet.join("vars.yaml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        if let Ok(generators) = std::fs::read_dir(fleet.join("generators")) {
            std::fs::create_dir(dir.path().join("generators")).unwrap();
            for e in generators {
                let e = e.unwrap();
                std::fs::copy(e.path(), dir.path().join("generators").join(e.file_name())).unwrap();
            }
        }
        let file = dir.path().join("vars.yaml");
        std::fs::write(
            &file,
            format!(
                "{text}\nscan:\n  allow:\n    - {{ fingerprint: \"sha256:{}\", reason: docs }}\n",
                "0".repeat(64)
            ),
        )
        .unwrap();
        let config = super::super::load(&file).unwrap();
        assert_eq!(config.scan.allow.len(), 1);
        assert_eq!(config.scan.allow[0].reason, "docs");
        assert!(
            load_scan_file(&file).is_err(),
            "a scan file holds scan: only"
        );
    }

    #[test]
    fn entries_are_checked_with_positions() {
        let ok = load(
            "  allow:\n    - { path: \"testdata/keys/**\", rules: [private-key], reason: test keys }\n",
        )
        .unwrap();
        let rule = &ok.allow[0];
        assert!(rule.allows(Rule::PrivateKey, "testdata/keys/a/hosts/x", "sha256:x"));
        assert!(!rule.allows(Rule::AgeIdentity, "testdata/keys/a/hosts/x", "sha256:x"));
        assert!(!rule.allows(Rule::PrivateKey, "src/testdata/keys/x", "sha256:x"));

        let err =
            load("  allow:\n    - { rules: [store-not-age, nope], reason: \" \" }\n").unwrap_err();
        for want in [
            "scan.yaml:4:7: a scan.allow entry needs a path or a fingerprint",
            "the reason of a scan.allow entry is empty",
            "store rule \"store-not-age\" cannot be allowed",
            "unknown scan rule \"nope\"",
        ] {
            assert!(err.contains(want), "{want} not in:\n{err}");
        }
        let err =
            load("  allow:\n    - { path: \"../x/[\", fingerprint: \"sha256:AB\", reason: r }\n")
                .unwrap_err();
        assert!(
            err.contains("must be relative to the repository root"),
            "{err}"
        );
        assert!(err.contains("is not sha256:<64 hex digits>"), "{err}");
        let err = load("  allow:\n    - { path: \"a/[\", reason: r }\n").unwrap_err();
        assert!(err.contains("path glob \"a/[\""), "{err}");
    }

    #[test]
    fn a_star_stays_in_its_directory() {
        let c = load("  allow:\n    - { path: \"docs/*.md\", reason: examples }\n").unwrap();
        assert!(c.allow[0].allows(Rule::PrivateKey, "docs/scan.md", ""));
        assert!(!c.allow[0].allows(Rule::PrivateKey, "docs/deep/scan.md", ""));
    }
}
