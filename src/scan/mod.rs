//! `vars scan`: no tracked or staged file holds plaintext key material, inside or outside the
//! store (DESIGN §7, issue 12). CI and pre-commit run it; it needs no identity and never
//! decrypts.
//!
//! A scan is a one-way trip: `source` lists what to read (the git index, the staged
//! changes, untracked files, or paths on disk) and reads each blob once, in parallel;
//! [`rules`] finds key material in each file's bytes; `store` judges the vars store against
//! its `meta.json` files; then inline `vars:allow` comments and vars.yaml's `scan.allow`
//! ([`crate::model::ScanConfig`]) set known false positives aside, and [`format`](mod@format) renders
//! the [`Report`] as JSON, SARIF or GitHub annotations. No output ever contains the matched
//! text: findings carry positions and a fingerprint (a hash), never content.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::Config;

mod bech32;
mod catalogue;
pub mod format;
pub mod rules;
mod source;
mod store;

pub use catalogue::{Level, Rule};
pub use source::Origin;

use source::{Content, Source, Want};

/// Errors that stop a scan (exit 1); findings are not errors.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The working directory is not in a git repository and no paths were given.
    #[error("{} is not in a git repository ({reason})", dir.display())]
    NotARepository {
        /// Where the search started.
        dir: PathBuf,
        /// What gix said.
        reason: String,
    },
    /// A bare repository has no index to scan.
    #[error("a bare repository has no index or worktree to scan")]
    Bare,
    /// A path given on the command line is outside the repository.
    #[error("{} is outside the repository at {}", path.display(), root.display())]
    OutsideRepository {
        /// The path as given.
        path: PathBuf,
        /// The worktree root.
        root: PathBuf,
    },
    /// Reading the repository failed.
    #[error("cannot {action}: {message}")]
    Git {
        /// What was being done.
        action: &'static str,
        /// gix's message.
        message: String,
    },
    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct Request {
    /// The directory the scan starts in (the repository is discovered from here).
    pub cwd: PathBuf,
    /// Only index entries that differ from `HEAD` (pre-commit).
    pub staged: bool,
    /// Also untracked, non-ignored files.
    pub untracked: bool,
    /// Narrow to these paths (relative to `cwd`); outside a repository, the files to read.
    pub paths: Vec<PathBuf>,
    /// Files larger than this are skipped and counted.
    pub max_size: u64,
    /// Known false positives (vars.yaml's `scan.allow`, an allow file).
    pub allow: Vec<crate::model::AllowRule>,
}

impl Request {
    /// Scan the whole index from `cwd`.
    pub fn new(cwd: impl Into<PathBuf>) -> Self {
        Request {
            cwd: cwd.into(),
            staged: false,
            untracked: false,
            paths: Vec::new(),
            max_size: rules::DEFAULT_MAX_SIZE,
            allow: Vec::new(),
        }
    }
}

/// One finding. Positions are 1-based (0 when a rule judges a whole file); columns count
/// Unicode scalar values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    pub rule: Rule,
    /// Its level.
    pub level: Level,
    /// Repository-relative path with `/` (or the path as given, outside a repository).
    pub path: String,
    /// First line of the match.
    pub line: usize,
    /// First column of the match.
    pub column: usize,
    /// Last line of the match.
    pub end_line: usize,
    /// The column just past the match on its last line.
    pub end_column: usize,
    /// Where the bytes came from.
    pub source: Origin,
    /// The blob id, for index entries.
    pub oid: Option<String>,
    /// `sha256:` of rule, path and match: stable across line moves, for `scan.allow`.
    pub fingerprint: String,
    /// What was found (never the match).
    pub message: String,
    /// What to do.
    pub hint: &'static str,
}

/// Counts of what was read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Files whose content was scanned.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Files not scanned, by reason.
    pub skipped: Skipped,
    /// Findings reported (allowed ones not included).
    pub findings: usize,
    /// Findings set aside by `vars:allow` or `scan.allow`.
    pub allowed: usize,
    /// Whether the store rules ran (a vars.yaml was found and its store is in the scan).
    pub store_checked: bool,
}

/// Files not scanned, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// A NUL byte in the first 8000 bytes.
    pub binary: usize,
    /// Larger than the size cap.
    pub too_large: usize,
    /// Symlinks (outside the store; inside, they are findings).
    pub symlinks: usize,
    /// Submodules (outside the store).
    pub submodules: usize,
}

/// The result of a scan: findings sorted by path, line and rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// What was found.
    pub findings: Vec<Finding>,
    /// What was read.
    pub summary: Summary,
}

impl Report {
    /// Whether the report fails the scan: any error, or any warning when `strict`.
    pub fn fails(&self, strict: bool) -> bool {
        self.findings
            .iter()
            .any(|f| f.level == Level::Error || strict)
    }
}

/// Run a scan. `config` (vars.yaml, if one was found) turns on the store rules; its
/// `scan.allow` belongs in [`Request::allow`].
pub fn scan(req: &Request, config: Option<&Config>) -> Result<Report, ScanError> {
    let source = Source::open(&Want {
        cwd: &req.cwd,
        staged: req.staged,
        untracked: req.untracked,
        paths: &req.paths,
    })?;
    let store_spec = match config {
        Some(c) => Some(store::StoreSpec::new(
            c,
            &std::fs::canonicalize(&c.root).map_err(|source| ScanError::Io {
                path: c.root.clone(),
                source,
            })?,
        )),
        None => None,
    };
    let in_store = store_spec
        .as_ref()
        .map(|s| store::entries_in_store(s, &source.entries))
        .unwrap_or_default();
    let mut in_store_set = vec![false; source.entries.len()];
    for &i in &in_store {
        in_store_set[i] = true;
    }
    // Read each entry once: the selected ones for the content rules, the whole store for
    // the store rules (a store file may be ciphertext slightly over the content cap).
    let pick: Vec<usize> = (0..source.entries.len())
        .filter(|&i| source.entries[i].selected || in_store_set[i])
        .collect();
    let cap_for = |i: usize| {
        if in_store_set[i] {
            req.max_size.saturating_mul(2)
        } else {
            req.max_size
        }
    };
    let allow = req.allow.as_slice();
    // Content rules run on the thread that read the file; only store files are kept, for
    // the store rules.
    let judged = source.read(&pick, cap_for, |i, c| {
        let e = &source.entries[i];
        let in_store = in_store_set[i];
        let verdict = e
            .selected
            .then(|| content_findings(e, &c, req.max_size, in_store, allow));
        (verdict, in_store.then_some(c))
    })?;
    let mut summary = Summary::default();
    let mut findings = Vec::new();
    let mut contents: BTreeMap<usize, Content> = BTreeMap::new();
    for (i, (verdict, kept)) in judged {
        if let Some(c) = kept {
            contents.insert(i, c);
        }
        let Some((f, allowed, count)) = verdict else {
            continue;
        };
        findings.extend(f);
        summary.allowed += allowed;
        match count {
            FileCount::Scanned(bytes) => {
                summary.files += 1;
                summary.bytes += bytes;
            }
            FileCount::Binary => summary.skipped.binary += 1,
            FileCount::TooLarge => summary.skipped.too_large += 1,
            FileCount::Symlink => summary.skipped.symlinks += 1,
            FileCount::Submodule => summary.skipped.submodules += 1,
        }
    }
    if let Some(spec) = &store_spec {
        summary.store_checked = !in_store.is_empty();
        // In --staged mode, a store finding counts when its file is staged, or when the
        // meta.json that decides about it is.
        let staged_meta: std::collections::BTreeSet<PathBuf> = in_store
            .iter()
            .map(|&i| &source.entries[i])
            .filter(|e| {
                e.selected
                    && e.abs.file_name()
                        == Some(std::ffi::OsStr::new(crate::store::layout::META_FILE))
            })
            .filter_map(|e| e.abs.parent().map(Path::to_path_buf))
            .collect();
        for f in store::check(spec, &source.entries, &in_store, &contents) {
            let e = &source.entries[f.entry];
            let relevant = e.selected
                || (req.staged
                    && req.paths.is_empty()
                    && e.abs.parent().is_some_and(|p| staged_meta.contains(p)));
            if !relevant {
                continue;
            }
            findings.push(Finding {
                rule: f.rule,
                level: f.rule.level(),
                path: e.path.clone(),
                line: 0,
                column: 0,
                end_line: 0,
                end_column: 0,
                source: e.origin,
                oid: e.oid.map(|o| o.to_string()),
                fingerprint: fingerprint(f.rule, &e.path, f.message.as_bytes()),
                message: f.message,
                hint: f.rule.hint(),
            });
        }
    }
    findings.sort_by(|a, b| {
        (&a.path, a.line, a.column, a.rule).cmp(&(&b.path, b.line, b.column, b.rule))
    });
    summary.findings = findings.len();
    Ok(Report { findings, summary })
}

enum FileCount {
    Scanned(u64),
    Binary,
    TooLarge,
    Symlink,
    Submodule,
}

fn content_findings(
    e: &source::Entry,
    c: &Content,
    max_size: u64,
    in_store: bool,
    allow: &[crate::model::AllowRule],
) -> (Vec<Finding>, usize, FileCount) {
    let mut hits = Vec::new();
    if let Some(h) = rules::path_rule(&e.path) {
        hits.push(h);
    }
    let (bytes, count): (&[u8], FileCount) = match c {
        Content::NotRegular => (
            &[],
            if e.kind == source::EntryKind::Submodule {
                FileCount::Submodule
            } else {
                FileCount::Symlink
            },
        ),
        Content::TooLarge => (&[], FileCount::TooLarge),
        Content::Bytes(b) if b.len() as u64 > max_size => (&[], FileCount::TooLarge),
        Content::Bytes(b) => {
            // `*.age` outside the store must be age; inside, the store rules say so.
            if !in_store && e.path.ends_with(".age") && !looks_age(b) {
                hits.push(rules::Hit {
                    rule: Rule::AgeExtensionNotAge,
                    start: 0,
                    end: 0,
                    message: "named *.age but not age-encrypted".into(),
                    fingerprint_text: Vec::new(),
                });
            }
            if rules::is_binary(b) {
                (b.as_slice(), FileCount::Binary)
            } else {
                hits.extend(rules::scan_content(&e.path, b));
                (b.as_slice(), FileCount::Scanned(b.len() as u64))
            }
        }
    };
    let mut out = Vec::new();
    let mut allowed = 0;
    // The ranged hits come in order of position (scan_content sorts them).
    let mut cursor = Cursor::new(bytes);
    // Rule → (matches not listed, where the first is, whether it has a position).
    let mut unlisted: BTreeMap<Rule, (usize, usize, bool)> = BTreeMap::new();
    let by_fingerprint = allow.iter().any(|a| a.fingerprint.is_some());
    for h in hits {
        let ranged = h.end > h.start;
        if ranged && cursor.allowed(h.start) {
            allowed += 1;
            continue;
        }
        // A finding not listed needs its fingerprint only to be allowed by one.
        let listed = out.len() < MAX_FINDINGS_PER_FILE;
        let fp = if listed || by_fingerprint {
            fingerprint(h.rule, &e.path, &h.fingerprint_text)
        } else {
            String::new()
        };
        if allow.iter().any(|a| a.allows(h.rule, &e.path, &fp)) {
            allowed += 1;
            continue;
        }
        if !listed {
            unlisted.entry(h.rule).or_insert((0, h.start, ranged)).0 += 1;
            continue;
        }
        let ((line, column), (end_line, end_column)) = if ranged {
            let start = cursor.seek(h.start);
            (start, cursor.clone().seek(h.end))
        } else {
            ((0, 0), (0, 0))
        };
        out.push(Finding {
            rule: h.rule,
            level: h.rule.level(),
            path: e.path.clone(),
            line,
            column,
            end_line,
            end_column,
            source: e.origin,
            oid: e.oid.map(|o| o.to_string()),
            fingerprint: fp,
            message: h.message.into_owned(),
            hint: h.rule.hint(),
        });
    }
    for (rule, (n, at, ranged)) in unlisted {
        let (line, column) = if ranged { cursor.seek(at) } else { (0, 0) };
        let message = format!(
            "{n} more {} finding(s) in this file, from here on, are not listed (at most \
             {MAX_FINDINGS_PER_FILE} per file)",
            rule.id()
        );
        out.push(Finding {
            rule,
            level: rule.level(),
            path: e.path.clone(),
            line,
            column,
            end_line: line,
            end_column: column,
            source: e.origin,
            oid: e.oid.map(|o| o.to_string()),
            fingerprint: fingerprint(rule, &e.path, message.as_bytes()),
            message,
            hint: rule.hint(),
        });
    }
    (out, allowed, count)
}

/// Findings listed per file. The rest are counted in one finding per rule, at the first one
/// not listed: a crafted 16 MiB file holds 700,000 matches, and reporting each took seconds
/// and gigabytes (review 2, finding 8). Allowed matches are set aside before counting.
const MAX_FINDINGS_PER_FILE: usize = 1000;

/// Whether a `*.age` file outside the store is plausibly age: binary or armored header.
fn looks_age(b: &[u8]) -> bool {
    b.starts_with(b"age-encryption.org/v1\n")
        || b.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

/// `vars:allow` on the line starting at `ls`, or alone on the line just above it.
fn inline_allowed(bytes: &[u8], ls: usize) -> bool {
    const MARK: &[u8] = b"vars:allow";
    let le = memchr::memchr(b'\n', &bytes[ls..]).map_or(bytes.len(), |i| ls + i);
    if memchr::memmem::find(&bytes[ls..le], MARK).is_some() {
        return true;
    }
    if ls == 0 {
        return false;
    }
    // The line above must hold the mark alone, after comment marks: `# vars:allow why`.
    let (ps, pe) = rules::line_bounds(bytes, ls - 1);
    let above = &bytes[ps..pe];
    let start = above
        .iter()
        .position(|c| !(c.is_ascii_whitespace() || b"#/*;%-<!".contains(c)))
        .unwrap_or(above.len());
    above[start..].starts_with(MARK)
}

/// Lines and columns of the findings of one file, counted forward from the last position
/// asked for: a file of many findings (one line of 200,000 placeholders) is read once, not
/// once per finding (review 2, finding 8).
#[derive(Clone)]
struct Cursor<'a> {
    bytes: &'a [u8],
    /// The byte counted up to, its 1-based line and column, and where its line starts.
    at: usize,
    line: usize,
    column: usize,
    line_start: usize,
    /// The line last asked about `vars:allow`: its start and the answer.
    allow: Option<(usize, bool)>,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Cursor {
            bytes,
            at: 0,
            line: 1,
            column: 1,
            line_start: 0,
            allow: None,
        }
    }

    /// 1-based line and column (in Unicode scalar values) of byte `to`.
    fn seek(&mut self, to: usize) -> (usize, usize) {
        let to = to.min(self.bytes.len());
        if to < self.at {
            // Not in order: count again from the start (correct, only slower).
            *self = Cursor::new(self.bytes);
        }
        // Count UTF-8 lead bytes: every byte that is not a continuation byte starts a scalar.
        let scalars = |b: &[u8]| b.iter().filter(|b| (**b & 0xc0) != 0x80).count();
        let seg = &self.bytes[self.at..to];
        match memchr::memrchr(b'\n', seg) {
            Some(i) => {
                self.line += memchr::memchr_iter(b'\n', seg).count();
                self.line_start = self.at + i + 1;
                self.column = scalars(&self.bytes[self.line_start..to]) + 1;
            }
            None => self.column += scalars(seg),
        }
        self.at = to;
        (self.line, self.column)
    }

    /// Whether a `vars:allow` mark sets aside a finding at byte `at` (see [`inline_allowed`]).
    fn allowed(&mut self, at: usize) -> bool {
        self.seek(at);
        match self.allow {
            Some((ls, yes)) if ls == self.line_start => yes,
            _ => {
                let yes = inline_allowed(self.bytes, self.line_start);
                self.allow = Some((self.line_start, yes));
                yes
            }
        }
    }
}

/// `sha256:` of `rule␀path␀text`.
fn fingerprint(rule: Rule, path: &str, text: &[u8]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(rule.id().as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(text);
    format!("sha256:{}", hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "ab\nçd KEY\nx\n\nyz";
        let at = text.find("KEY").unwrap();
        let mut c = Cursor::new(text.as_bytes());
        assert_eq!(c.seek(0), (1, 1));
        assert_eq!(c.seek(1), (1, 2));
        assert_eq!(c.seek(at), (2, 4));
        assert_eq!(c.seek(at + 2), (2, 6));
        assert_eq!(c.clone().seek(text.len()), (5, 3));
        assert_eq!(c.seek(text.find('x').unwrap()), (3, 1));
        // Backwards still answers right.
        assert_eq!(c.seek(at), (2, 4));
    }

    #[test]
    fn inline_allow_on_the_line_or_above() {
        let text = b"a\n# vars:allow test\nKEY\nKEY2 vars:allow\nKEY3\n<!-- vars:allow -->\nKEY4\n";
        let find = |k: &[u8]| memchr::memmem::find(text, k).unwrap();
        let mut c = Cursor::new(text);
        assert!(!c.allowed(0));
        assert!(c.allowed(find(b"KEY\n")));
        assert!(c.allowed(find(b"KEY2")));
        assert!(c.allowed(find(b"KEY2") + 2), "the same line");
        assert!(!c.allowed(find(b"KEY3")), "the mark above must stand alone");
        assert!(c.allowed(find(b"KEY4")));
        assert!(!Cursor::new(b"KEY\n").allowed(0));
    }

    #[test]
    fn fingerprints_depend_on_rule_path_and_text_only() {
        let a = fingerprint(Rule::PrivateKey, "a", b"x");
        assert_eq!(a, fingerprint(Rule::PrivateKey, "a", b"x"));
        assert_ne!(a, fingerprint(Rule::PrivateKey, "b", b"x"));
        assert_ne!(a, fingerprint(Rule::AgeIdentity, "a", b"x"));
        assert!(crate::model::is_fingerprint(&a));
    }
}
