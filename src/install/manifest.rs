//! What `vars install` is asked to install, read from one of its two inputs
//! (`docs/install-manifest.md`): an install manifest written by a Nix module, or a store
//! `manifest.json` together with `--store DIR`. Both become one [`Plan`]: the items to install
//! (files and templates, by their path relative to the target), each with its source, owner,
//! group, mode, units and link, validated in full before a single source is read.
//!
//! Everything here is checked and every problem is collected ([`Problem`]): names, modes,
//! units, links, placeholders, and that a store manifest names only files of its own
//! instances (`store_manifest`). The next step, `secrets`, reads and decrypts what the plan
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use sha2::Digest as _;

use super::Problem;
use crate::model::{check_file_name, check_name};
use crate::spec::NeededFor;
use crate::store::layout::PrincipalKind;

/// The install manifest's format version.
pub const INSTALL_FORMAT: u32 = 1;

/// The directory of user instances deployed to a machine, relative to the target.
pub const USERS_PREFIX: &str = "_users";
/// The directory of rendered templates, relative to the target.
pub const TEMPLATES_PREFIX: &str = "_templates";

/// The install manifest as the Nix modules write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct InstallManifest {
    format: u32,
    #[allow(dead_code, reason = "serde checks it: \"install\" is its only value")]
    kind: InstallKind,
    principal: Principal,
    files: BTreeMap<String, InstallFile>,
    #[serde(default)]
    templates: BTreeMap<String, InstallTemplate>,
    #[serde(default)]
    placeholders: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum InstallKind {
    Install,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Principal {
    kind: PrincipalKind,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct InstallFile {
    generator: String,
    file: String,
    #[serde(default)]
    user: Option<String>,
    source: PathBuf,
    secret: bool,
    owner: String,
    group: Option<String>,
    mode: String,
    needed_for: NeededFor,
    #[serde(default)]
    restart_units: Vec<String>,
    #[serde(default)]
    reload_units: Vec<String>,
    #[serde(default)]
    link: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct InstallTemplate {
    content: String,
    owner: String,
    group: Option<String>,
    mode: String,
    #[serde(default)]
    restart_units: Vec<String>,
    #[serde(default)]
    reload_units: Vec<String>,
    #[serde(default)]
    link: Option<PathBuf>,
}

/// Where an item's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An absolute path (a Nix store path) named by an install manifest.
    Path(PathBuf),
    /// A path relative to `--store`, read beneath it without following links.
    Store(String),
    /// A template: rendered from this content by replacing placeholders.
    Template {
        /// The content with its placeholders.
        content: String,
        /// Each placeholder found in it, with the item (rel) whose plaintext replaces it.
        placeholders: BTreeMap<String, String>,
    },
}

/// One file to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its path relative to the target (`gen/file`, `_users/u/gen/file`, `_templates/t`).
    pub rel: String,
    /// Where its bytes come from.
    pub source: Source,
    /// Encrypted (decrypted at install) or public (copied as is).
    pub secret: bool,
    /// Owner name (NSS).
    pub owner: String,
    /// Group name; `None` is the owner's primary group.
    pub group: Option<String>,
    /// Permission bits (at most 0o777).
    pub mode: u32,
    /// Which `--phase` installs it (templates: services).
    pub needed_for: NeededFor,
    /// Units to `try-restart` when its plaintext was added or changed.
    pub restart_units: Vec<String>,
    /// Units to `try-reload-or-restart` when its plaintext was added or changed.
    pub reload_units: Vec<String>,
    /// An absolute path where a symlink to the installed file is made.
    pub link: Option<PathBuf>,
}

/// Everything the manifest asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Whose files these are.
    pub principal: (PrincipalKind, String),
    /// Files and templates, in path order (templates last).
    pub items: Vec<Item>,
}

impl Plan {
    /// The items `phase` installs.
    pub fn in_phase(&self, phase: NeededFor) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.needed_for == phase)
    }
}

/// Parse a manifest: an install manifest (`"kind": "install"`), or a store manifest
/// (`"kind": "machine"` / `"user"`), which only `--store` makes usable (`has_store`).
pub fn parse(bytes: &[u8], has_store: bool) -> Result<Plan, Vec<Problem>> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        vec![Problem::new(
            "the manifest",
            format!("is not valid JSON: {e}"),
        )]
    })?;
    let install = value.get("kind").and_then(|k| k.as_str()) == Some("install");
    let invalid = |e: serde_json::Error| vec![Problem::new("the manifest", e.to_string())];
    match (install, has_store) {
        (true, false) => from_install(serde_json::from_value(value).map_err(invalid)?),
        (false, true) => {
            super::store_manifest::plan(serde_json::from_value(value).map_err(invalid)?)
        }
        (true, true) => Err(vec![Problem::new(
            "--store",
            "is only for a store manifest: an install manifest names every source itself",
        )]),
        (false, false) => Err(vec![Problem::new(
            "the manifest",
            "is a store manifest (not \"kind\": \"install\"), so it needs --store DIR",
        )]),
    }
}

/// Collects the problems of a manifest while its items are checked.
#[derive(Default)]
pub(super) struct Checker {
    problems: Vec<Problem>,
    links: BTreeSet<PathBuf>,
}

impl Checker {
    pub(super) fn fail(&mut self, subject: impl Into<String>, cause: impl Into<String>) {
        self.problems.push(Problem::new(subject, cause));
    }

    /// Checks what every item has; `None` (and a problem) for a bad mode.
    pub(super) fn common(&mut self, subject: &str, item: &Item, mode: &str) -> Option<u32> {
        if item.owner.is_empty() || item.owner.contains(['\0', '/']) {
            self.fail(
                subject,
                format!("owner {:?} is not a user name", item.owner),
            );
        }
        if let Some(g) = &item.group
            && (g.is_empty() || g.contains(['\0', '/']))
        {
            self.fail(subject, format!("group {g:?} is not a group name"));
        }
        for unit in item.restart_units.iter().chain(&item.reload_units) {
            if let Err(why) = check_unit(unit) {
                self.fail(subject, format!("unit {unit:?} {why}"));
            }
        }
        if let Some(link) = &item.link {
            if let Err(why) = check_link(link) {
                self.fail(subject, format!("link {} {why}", link.display()));
            } else if !self.links.insert(link.clone()) {
                self.fail(
                    subject,
                    format!("link {} is also another file's link", link.display()),
                );
            }
        }
        match parse_mode(mode) {
            Some(m) => Some(m),
            None => {
                self.fail(
                    subject,
                    format!("mode {mode:?} is not an octal mode of at most 0777 (e.g. \"0400\")"),
                );
                None
            }
        }
    }

    pub(super) fn finish(self, mut plan: Plan) -> Result<Plan, Vec<Problem>> {
        if self.problems.is_empty() {
            plan.items.sort_by(|a, b| {
                let t = |i: &Item| matches!(i.source, Source::Template { .. });
                (t(a), &a.rel).cmp(&(t(b), &b.rel))
            });
            Ok(plan)
        } else {
            Err(self.problems)
        }
    }
}

fn from_install(m: InstallManifest) -> Result<Plan, Vec<Problem>> {
    let mut c = Checker::default();
    if m.format != INSTALL_FORMAT {
        c.fail(
            "the manifest",
            format!(
                "format {} is not supported (expected {INSTALL_FORMAT})",
                m.format
            ),
        );
    }
    if let Err(why) = check_name(&m.principal.name) {
        c.fail("principal.name", why);
    }
    let machine = m.principal.kind == PrincipalKind::Machine;
    let mut items = Vec::new();
    for (key, f) in m.files {
        let subject = format!("file {key}");
        let expected = match (&f.user, machine) {
            (Some(u), true) => format!("{USERS_PREFIX}/{u}/{}/{}", f.generator, f.file),
            (Some(u), false) if *u != m.principal.name => {
                c.fail(
                    &subject,
                    format!("is for user {u}, not {}", m.principal.name),
                );
                continue;
            }
            _ => format!("{}/{}", f.generator, f.file),
        };
        let names = [Some(&f.generator), f.user.as_ref()]
            .into_iter()
            .flatten()
            .map(|n| check_name(n))
            .chain([check_file_name(&f.file)])
            .find_map(Result::err);
        if let Some(why) = names {
            c.fail(
                &subject,
                format!("has a generator, user or file name that {why}"),
            );
            continue;
        }
        if key != expected {
            c.fail(
                &subject,
                format!("must be named {expected} (its generator, file and user say so)"),
            );
            continue;
        }
        if !f.source.is_absolute() || !plain(&f.source) {
            c.fail(
                &subject,
                format!("source {} is not a plain absolute path", f.source.display()),
            );
        }
        let mut item = Item {
            rel: key,
            source: Source::Path(f.source),
            secret: f.secret,
            owner: f.owner,
            group: f.group,
            mode: 0,
            needed_for: f.needed_for,
            restart_units: f.restart_units,
            reload_units: f.reload_units,
            link: f.link,
        };
        if let Some(mode) = c.common(&subject, &item, &f.mode) {
            item.mode = mode;
        }
        items.push(item);
    }
    let rels: BTreeSet<&str> = items.iter().map(|i| i.rel.as_str()).collect();
    for (placeholder, rel) in &m.placeholders {
        if !rels.contains(rel.as_str()) {
            c.fail(
                format!("placeholder {placeholder}"),
                format!("names {rel}, which is not in files"),
            );
        } else if *placeholder != placeholder_of(rel) {
            c.fail(
                format!("placeholder {placeholder}"),
                format!("is not <VARS:<sha256 of {rel}>:PLACEHOLDER>"),
            );
        }
    }
    let mut templates = Vec::new();
    for (name, t) in m.templates {
        let subject = format!("template {name}");
        if let Err(why) = check_name(&name) {
            c.fail(&subject, format!("has a name that {why}"));
            continue;
        }
        let mut used = BTreeMap::new();
        for (placeholder, rel) in &m.placeholders {
            if t.content.contains(placeholder.as_str()) {
                used.insert(placeholder.clone(), rel.clone());
            }
        }
        if let Some(unknown) = stray_placeholder(&t.content, &m.placeholders) {
            c.fail(
                &subject,
                format!("uses {unknown}, which is not in placeholders"),
            );
        }
        let mut item = Item {
            rel: format!("{TEMPLATES_PREFIX}/{name}"),
            source: Source::Template {
                content: t.content,
                placeholders: used,
            },
            secret: true,
            owner: t.owner,
            group: t.group,
            mode: 0,
            needed_for: NeededFor::Services,
            restart_units: t.restart_units,
            reload_units: t.reload_units,
            link: t.link,
        };
        if let Some(mode) = c.common(&subject, &item, &t.mode) {
            item.mode = mode;
        }
        templates.push(item);
    }
    items.extend(templates);
    c.finish(Plan {
        principal: (m.principal.kind, m.principal.name),
        items,
    })
}

/// `<VARS:<sha256 of rel>:PLACEHOLDER>`, what the Nix modules put in a template for `rel`.
pub fn placeholder_of(rel: &str) -> String {
    format!(
        "<VARS:{}:PLACEHOLDER>",
        hex::encode(sha2::Sha256::digest(rel.as_bytes()))
    )
}

/// A `<VARS:…:PLACEHOLDER>` in `content` that is not among `known` (a template referring to
/// a file this host does not receive).
fn stray_placeholder(content: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let mut rest = content;
    while let Some(start) = rest.find("<VARS:") {
        let candidate = &rest[start..];
        let end = candidate
            .find(":PLACEHOLDER>")
            .map(|e| e + ":PLACEHOLDER>".len());
        match end {
            Some(end) if !known.contains_key(&candidate[..end]) => {
                return Some(candidate[..end].chars().take(90).collect());
            }
            _ => rest = &candidate["<VARS:".len()..],
        }
    }
    None
}

pub use crate::model::parse_mode;

/// A systemd unit name: it is passed to `systemctl` as an argument, so nothing that could be
/// read as an option, and only the characters systemd allows.
fn check_unit(unit: &str) -> Result<(), &'static str> {
    if unit.is_empty() || unit.len() > 255 {
        return Err("must be 1 to 255 characters long");
    }
    if unit.starts_with(['-', '.']) {
        return Err("must not start with '-' or '.'");
    }
    if !unit
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'))
    {
        return Err("may contain only letters, digits and :-_.\\@");
    }
    if !unit.contains('.') {
        return Err("must have a type suffix (e.g. .service)");
    }
    Ok(())
}

/// A link path: absolute, plain (no `.` or `..`), not `/`.
fn check_link(link: &Path) -> Result<(), &'static str> {
    if !link.is_absolute() || !plain(link) || link.parent().is_none() {
        return Err("is not a plain absolute path of a file");
    }
    Ok(())
}

/// Whether `path` has no `.` or `..` component.
fn plain(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of `docs/install-manifest.md`, with real placeholders.
    fn example() -> serde_json::Value {
        let key = "ssh-host-ed25519/ssh_host_ed25519_key";
        serde_json::json!({
            "format": 1,
            "kind": "install",
            "principal": { "kind": "machine", "name": "cinnabar" },
            "files": {
                key: {
                    "generator": "ssh-host-ed25519", "file": "ssh_host_ed25519_key",
                    "user": null, "source": "/nix/store/abc-vars-ssh.age", "secret": true,
                    "owner": "root", "group": "root", "mode": "0400",
                    "needed-for": "services", "restart-units": ["sshd.service"],
                    "reload-units": [], "link": null
                },
                "_users/alice/git-signing-key/key": {
                    "generator": "git-signing-key", "file": "key", "user": "alice",
                    "source": "/nix/store/def", "secret": true, "owner": "alice",
                    "group": null, "mode": "0400", "needed-for": "users",
                    "restart-units": [], "reload-units": [], "link": "/etc/alice-key"
                }
            },
            "templates": {
                "app.env": {
                    "content": format!("TOKEN={}\n", placeholder_of(key)),
                    "owner": "app", "group": null, "mode": "0400",
                    "restart-units": ["app.service"], "reload-units": [], "link": null
                }
            },
            "placeholders": { placeholder_of(key): key }
        })
    }

    fn parse_value(v: &serde_json::Value) -> Result<Plan, Vec<String>> {
        parse(&serde_json::to_vec(v).unwrap(), false)
            .map_err(|ps| ps.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn the_documented_example_parses() {
        let plan = parse_value(&example()).unwrap();
        assert_eq!(plan.principal, (PrincipalKind::Machine, "cinnabar".into()));
        let rels: Vec<&str> = plan.items.iter().map(|i| i.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "_users/alice/git-signing-key/key",
                "ssh-host-ed25519/ssh_host_ed25519_key",
                "_templates/app.env"
            ]
        );
        assert_eq!(plan.items[0].needed_for, NeededFor::Users);
        assert_eq!(
            plan.items[0].link.as_deref(),
            Some(Path::new("/etc/alice-key"))
        );
        assert_eq!(plan.items[1].mode, 0o400);
        assert_eq!(plan.items[1].restart_units, ["sshd.service"]);
        match &plan.items[2].source {
            Source::Template { placeholders, .. } => {
                assert_eq!(
                    placeholders.values().collect::<Vec<_>>(),
                    ["ssh-host-ed25519/ssh_host_ed25519_key"]
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan.in_phase(NeededFor::Services).count(), 2);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut v = example();
        let files = v["files"].as_object_mut().unwrap();
        let mut bad = files["ssh-host-ed25519/ssh_host_ed25519_key"].clone();
        bad["mode"] = "4755".into();
        bad["restart-units"] = serde_json::json!(["--force", "ok.service"]);
        bad["source"] = "relative/x.age".into();
        bad["link"] = "/etc/../shadow".into();
        files.insert("ssh-host-ed25519/ssh_host_ed25519_key".into(), bad);
        let mut renamed = files["_users/alice/git-signing-key/key"].clone();
        renamed["user"] = "bob".into();
        files.insert("_users/alice/git-signing-key/key".into(), renamed);
        let mut traversal = files["ssh-host-ed25519/ssh_host_ed25519_key"].clone();
        traversal["file"] = "../../etc".into();
        files.insert("ssh-host-ed25519/../../etc".into(), traversal);
        v["templates"]["app.env"]["content"] = "<VARS:0000:PLACEHOLDER>".into();
        let errors = parse_value(&v).unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "mode \"4755\" is not an octal mode",
            "unit \"--force\" must not start with '-'",
            "source relative/x.age is not a plain absolute path",
            "link /etc/../shadow is not a plain absolute path",
            "must be named _users/bob/git-signing-key/key",
            "file ssh-host-ed25519/../../etc: has a generator, user or file name",
            "template app.env: uses <VARS:0000:PLACEHOLDER>, which is not in placeholders",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn formats_are_strict() {
        let mut unknown = example();
        unknown["files"]["ssh-host-ed25519/ssh_host_ed25519_key"]["path"] = "/x".into();
        assert!(parse_value(&unknown).unwrap_err()[0].contains("unknown field"));
        let mut version = example();
        version["format"] = 2.into();
        assert!(parse_value(&version).unwrap_err()[0].contains("format 2"));
        let mut wrong_hash = example();
        let key = "ssh-host-ed25519/ssh_host_ed25519_key";
        wrong_hash["placeholders"] = serde_json::json!({ placeholder_of("other"): key });
        let errors = parse_value(&wrong_hash).unwrap_err().join("\n");
        assert!(errors.contains("is not <VARS:<sha256 of"), "{errors}");
        let bytes = serde_json::to_vec(&example()).unwrap();
        assert!(
            parse(&bytes, true).unwrap_err()[0]
                .to_string()
                .contains("--store")
        );
        assert!(
            parse(b"{\"kind\":\"machine\"}", false).unwrap_err()[0]
                .to_string()
                .contains("needs --store")
        );
        assert!(parse(b"not json", false).is_err());
    }

    #[test]
    fn modes_and_units() {
        assert_eq!(parse_mode("0400"), Some(0o400));
        assert_eq!(parse_mode("640"), Some(0o640));
        for bad in ["", "4", "04000", "1400", "0800", "0x40", "+400"] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
        for ok in ["sshd.service", "getty@tty1.service", "a-b_c:d.socket"] {
            assert!(check_unit(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x.service",
            "noext",
            "a b.service",
            "a;b.service",
            ".service",
        ] {
            assert!(check_unit(bad).is_err(), "{bad}");
        }
    }
}
