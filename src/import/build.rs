//! The common part of every importer: matching the source's recipients to the machines and
//! users of vars.yaml (exactly, then through the age form of declared ssh-ed25519 keys), and
//! the [`Builder`] that turns the importers' candidates (a generator, its files, who reads
//! each instance) into an [`ImportPlan`]: vars names, exact readers and the scope they give,
//! the vars.yaml edits, the findings and the Nix reference table (see the module docs of
//! [`crate::import`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use super::{
    Edit, Finding, ImportError, ImportPlan, PlannedFile, PlannedGenerator, PlannedInstance,
    Severity, Source,
};
use crate::model::{self, Config, InstanceId, Origin, Scope};
use crate::recipients::Principal;
use crate::secret::SecretBytes;
use crate::set::Value;
use crate::store::layout::PrincipalKind;

/// The age recipient of an `ssh-ed25519` public key, as ssh-to-age computes it (the
/// Montgomery form of the Edwards point, bech32 with HRP `age`); `None` for other keys.
pub fn ssh_to_age(recipient: &str) -> Option<String> {
    use base64::Engine as _;
    let mut parts = recipient.split_whitespace();
    if parts.next()? != "ssh-ed25519" {
        return None;
    }
    let wire = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    // string "ssh-ed25519", string key (32 bytes)
    let (name, rest) = ssh_string(&wire)?;
    let (key, rest) = ssh_string(rest)?;
    if name != b"ssh-ed25519" || !rest.is_empty() || key.len() != 32 {
        return None;
    }
    let point = curve25519_dalek::edwards::CompressedEdwardsY(key.try_into().ok()?).decompress()?;
    let u = point.to_montgomery().to_bytes();
    bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age").ok()?, &u).ok()
}

fn ssh_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let body = b.get(4..4 + len)?;
    Some((body, &b[4 + len..]))
}

/// A recipient as matching compares it: ssh keys without their comment, age keys lowercase.
fn normalize(recipient: &str) -> String {
    let r = recipient.trim();
    if r.starts_with("ssh-") {
        r.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    } else {
        r.to_ascii_lowercase()
    }
}

/// Recipients of the source → the machines and users of vars.yaml.
pub(crate) struct Matcher {
    owners: HashMap<String, Vec<Principal>>,
}

impl Matcher {
    fn new(config: &Config) -> Self {
        let mut owners: HashMap<String, Vec<Principal>> = HashMap::new();
        let principals = config
            .machines
            .iter()
            .map(|(n, m)| (Principal::Machine(n.clone()), &m.recipients))
            .chain(
                config
                    .users
                    .iter()
                    .map(|(n, u)| (Principal::User(n.clone()), &u.recipients)),
            );
        for (p, rs) in principals {
            for r in rs {
                let mut forms = vec![normalize(r)];
                forms.extend(ssh_to_age(r));
                for f in forms {
                    let list = owners.entry(f).or_default();
                    if !list.contains(&p) {
                        list.push(p.clone());
                    }
                }
            }
        }
        Matcher { owners }
    }

    /// The declared principals owning `recipient` (also through its age form).
    pub(crate) fn owners(&self, recipient: &str) -> Vec<Principal> {
        let mut out: Vec<Principal> = Vec::new();
        let forms = std::iter::once(normalize(recipient)).chain(ssh_to_age(recipient));
        for f in forms {
            for p in self.owners.get(&f).into_iter().flatten() {
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
        }
        out
    }
}

/// Who reads an instance of a candidate.
pub(crate) enum Readers {
    /// The recipients its values are encrypted to (agenix, sops-nix).
    Recipients(Vec<String>),
    /// One machine's instance (clan `per-machine/<m>`).
    Machine(String),
    /// Named machines and users (clan `shared`, from its `machines/` and `users/` links).
    Named {
        /// Machines.
        machines: Vec<String>,
        /// Users.
        users: Vec<String>,
    },
}

/// A file of a candidate generator.
pub(crate) struct CandidateFile {
    /// The name in the source (made a vars name by the builder).
    pub raw_name: String,
    /// Encrypted or public.
    pub secret: bool,
    /// `Some(false)`: only admins read it (clan's `deploy = false`); `None`: by the readers.
    pub deploy: Option<bool>,
    /// Its key or path in the source, for messages.
    pub origin: String,
    /// How the Nix configuration referred to it.
    pub reference: String,
}

/// An instance of a candidate generator.
pub(crate) struct CandidateInstance {
    /// Who reads it.
    pub readers: Readers,
    /// Raw file name → value.
    pub values: Vec<(String, SecretBytes)>,
    /// Where it comes from, for messages.
    pub origin: String,
}

/// A generator an importer found.
pub(crate) struct Candidate {
    /// The name in the source.
    pub raw_name: String,
    /// Where it comes from.
    pub origin: String,
    /// Clan says whether it is shared; `None`: by the readers.
    pub share: Option<bool>,
    /// Its files.
    pub files: Vec<CandidateFile>,
    /// Its instances.
    pub instances: Vec<CandidateInstance>,
}

/// Collects what an importer finds and turns it into an [`ImportPlan`].
pub(crate) struct Builder<'a> {
    config: &'a Config,
    source: Source,
    pub(crate) matcher: Matcher,
    candidates: Vec<Candidate>,
    findings: Vec<Finding>,
    suggestions: Vec<String>,
}

/// A vars name from a name in the source: characters vars does not allow become `-`, leading
/// ones that cannot start a name are dropped, `..` becomes `.`.
pub(crate) fn vars_name(raw: &str) -> Option<String> {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", ".");
    }
    let s = s.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    model::check_name(s).is_ok().then(|| s.to_owned())
}

impl<'a> Builder<'a> {
    pub(crate) fn new(config: &'a Config, source: Source) -> Self {
        Builder {
            config,
            source,
            matcher: Matcher::new(config),
            candidates: Vec::new(),
            findings: Vec::new(),
            suggestions: Vec::new(),
        }
    }

    pub(crate) fn finding(
        &mut self,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) {
        let f = Finding {
            severity,
            subject: crate::text::escape(&subject.into()).into_owned(),
            message: message.into(),
        };
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    pub(crate) fn suggest(&mut self, line: String) {
        if !self.suggestions.contains(&line) {
            self.suggestions.push(line);
        }
    }

    pub(crate) fn config_is_admin(&self, user: &str) -> bool {
        self.config.admins.iter().any(|a| a == user)
    }

    pub(crate) fn add(&mut self, c: Candidate) {
        self.candidates.push(c);
    }

    /// The principals reading an instance with these recipients; unmatched ones are losses.
    fn readers_of(
        &mut self,
        origin: &str,
        recipients: &[String],
    ) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
        let (mut machines, mut users, mut admins) =
            (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for r in recipients {
            let owners = self.matcher.owners(r);
            if owners.is_empty() {
                let short: String = r.chars().take(32).collect();
                self.finding(
                    Severity::Loss,
                    origin,
                    format!(
                        "recipient {}… is no machine's or user's in vars.yaml: it loses access",
                        crate::text::escape(&short)
                    ),
                );
            }
            for p in owners {
                match p {
                    Principal::Machine(m) => {
                        machines.insert(m);
                    }
                    Principal::User(u) if self.config.admins.contains(&u) => {
                        admins.insert(u);
                    }
                    Principal::User(u) => {
                        users.insert(u);
                    }
                    Principal::Vault => {}
                }
            }
        }
        (machines, users, admins)
    }

    /// Scope, assignments and whether anyone but the vault reads it.
    fn place(
        &self,
        machines: &BTreeSet<String>,
        users: &BTreeSet<String>,
        admins: &BTreeSet<String>,
        share: Option<bool>,
    ) -> (Scope, Vec<(PrincipalKind, String)>, bool) {
        let listed = |u: &String| self.config.machines.values().any(|m| m.users.contains(u));
        let assign_all = || {
            machines
                .iter()
                .map(|m| (PrincipalKind::Machine, m.clone()))
                .chain(users.iter().map(|u| (PrincipalKind::User, u.clone())))
                .collect::<Vec<_>>()
        };
        match (machines.len(), users.len(), share) {
            (0, 0, _) => {
                let admin = admins
                    .iter()
                    .next()
                    .or_else(|| self.config.admins.first())
                    .cloned()
                    .unwrap_or_default();
                let scope = if share == Some(true) {
                    Scope::Shared
                } else {
                    Scope::User(admin.clone())
                };
                (scope, vec![(PrincipalKind::User, admin)], false)
            }
            (1, 0, None | Some(false)) => {
                let m = machines.iter().next().expect("one").clone();
                (
                    Scope::Machine(m.clone()),
                    vec![(PrincipalKind::Machine, m)],
                    true,
                )
            }
            (0, 1, None | Some(false)) if !users.iter().any(listed) => {
                let u = users.iter().next().expect("one").clone();
                (Scope::User(u.clone()), vec![(PrincipalKind::User, u)], true)
            }
            _ => (Scope::Shared, assign_all(), true),
        }
    }

    /// Make the plan: names, readers, scopes, edits, references.
    pub(crate) fn finish(mut self) -> Result<ImportPlan, ImportError> {
        let candidates = std::mem::take(&mut self.candidates);
        if candidates.iter().all(|c| c.instances.is_empty()) {
            return Err(self.nothing());
        }
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut generators = Vec::new();
        let mut references = Vec::new();
        let mut edits = BTreeSet::new();
        for c in candidates {
            if c.instances.is_empty() {
                continue;
            }
            let name = vars_name(&c.raw_name).ok_or_else(|| ImportError::InvalidName {
                origin: c.origin.clone(),
                raw: c.raw_name.clone(),
            })?;
            if let Some(first) = names.insert(name.clone(), c.origin.clone()) {
                return Err(ImportError::Collision {
                    name,
                    first,
                    second: c.origin,
                });
            }
            match self.config.generators.get(&name) {
                Some(g) if g.origin != Origin::Shipped || self.in_use(&name) => {
                    return Err(ImportError::Exists {
                        name,
                        origin: c.origin,
                        existing: match &g.origin {
                            Origin::Inline => "inline in vars.yaml".into(),
                            Origin::Local(p) => p.display().to_string(),
                            Origin::Shipped => "shipped with vars, and in use".into(),
                        },
                    });
                }
                _ if crate::model::shipped::find(&name).is_some() => self.finding(
                    Severity::Note,
                    &c.origin,
                    format!("generator {name} hides the shipped generator of that name"),
                ),
                _ => {}
            }
            // File names.
            let mut file_names: BTreeMap<String, String> = BTreeMap::new();
            let mut raw_to_file: HashMap<String, usize> = HashMap::new();
            let mut files: Vec<PlannedFile> = Vec::new();
            for f in &c.files {
                let fname = vars_name(&f.raw_name)
                    .filter(|n| model::check_file_name(n).is_ok())
                    .or_else(|| {
                        vars_name(&format!("{}-file", f.raw_name))
                            .filter(|n| model::check_file_name(n).is_ok())
                    })
                    .ok_or_else(|| ImportError::InvalidName {
                        origin: f.origin.clone(),
                        raw: f.raw_name.clone(),
                    })?;
                if let Some(first) = file_names.insert(fname.clone(), f.origin.clone()) {
                    return Err(ImportError::Collision {
                        name: format!("{name}/{fname}"),
                        first,
                        second: f.origin.clone(),
                    });
                }
                raw_to_file.insert(f.raw_name.clone(), files.len());
                files.push(PlannedFile {
                    name: fname.clone(),
                    secret: f.secret,
                    deploy: f.deploy.unwrap_or(true),
                    origin: f.origin.clone(),
                });
                references.push((
                    f.reference.clone(),
                    format!("config.vars.generators.{name}.files.{fname}.path"),
                ));
            }
            // Instances.
            let mut instances = Vec::new();
            let mut share = c.share.unwrap_or(false);
            let mut anyone_reads = false;
            for inst in c.instances {
                let (machines, users, admins) = match &inst.readers {
                    Readers::Recipients(rs) => self.readers_of(&inst.origin, rs),
                    Readers::Machine(m) => {
                        if !self.config.machines.contains_key(m) {
                            self.finding(
                                Severity::Loss,
                                &inst.origin,
                                format!("machine {} is not declared in vars.yaml: its instance is left out", crate::text::escape(m)),
                            );
                            continue;
                        }
                        (
                            BTreeSet::from([m.clone()]),
                            BTreeSet::new(),
                            BTreeSet::new(),
                        )
                    }
                    Readers::Named { machines, users } => {
                        let mut ms = BTreeSet::new();
                        let mut us = BTreeSet::new();
                        let mut ads = BTreeSet::new();
                        for m in machines {
                            if self.config.machines.contains_key(m) {
                                ms.insert(m.clone());
                            } else {
                                self.finding(
                                    Severity::Loss,
                                    &inst.origin,
                                    format!(
                                        "machine {} is not declared in vars.yaml: it loses access",
                                        crate::text::escape(m)
                                    ),
                                );
                            }
                        }
                        for u in users {
                            if self.config.admins.contains(u) {
                                ads.insert(u.clone());
                            } else if self.config.users.contains_key(u) {
                                us.insert(u.clone());
                            } else {
                                self.finding(
                                    Severity::Loss,
                                    &inst.origin,
                                    format!(
                                        "user {} is not declared in vars.yaml: they lose access",
                                        crate::text::escape(u)
                                    ),
                                );
                            }
                        }
                        (ms, us, ads)
                    }
                };
                let (scope, assign, reads) = self.place(&machines, &users, &admins, c.share);
                anyone_reads |= reads;
                if scope == Scope::Shared {
                    share = true;
                }
                let id = InstanceId {
                    scope,
                    generator: name.clone(),
                };
                if instances.iter().any(|i: &PlannedInstance| i.id == id) {
                    return Err(ImportError::Collision {
                        name: id.to_string(),
                        first: c.origin.clone(),
                        second: inst.origin.clone(),
                    });
                }
                for (kind, principal) in assign {
                    edits.insert(Edit {
                        kind,
                        principal,
                        generator: name.clone(),
                    });
                }
                let mut values = Vec::new();
                for (raw, bytes) in inst.values {
                    let idx = raw_to_file[&raw];
                    values.push(Value {
                        file: files[idx].name.clone(),
                        bytes,
                    });
                }
                let readers = machines
                    .iter()
                    .map(|m| format!("machine {m}"))
                    .chain(users.iter().map(|u| format!("user {u}")))
                    .collect();
                instances.push(PlannedInstance {
                    id,
                    readers,
                    values,
                });
            }
            if instances.is_empty() {
                continue;
            }
            if share && instances.len() > 1 {
                return Err(ImportError::Collision {
                    name: format!("shared/{name}"),
                    first: c.origin.clone(),
                    second: "another instance of it".into(),
                });
            }
            if !anyone_reads {
                for f in &mut files {
                    f.deploy = false;
                }
            }
            // Every instance must give every file (vars instances are whole).
            for inst in &instances {
                let given: BTreeSet<&str> = inst.values.iter().map(|v| v.file.as_str()).collect();
                if let Some(f) = files.iter().find(|f| !given.contains(f.name.as_str())) {
                    return Err(ImportError::Source {
                        path: PathBuf::from(&c.origin),
                        reason: format!(
                            "{} has no value for {} (every instance of a generator needs every file)",
                            inst.id, f.origin
                        ),
                    });
                }
            }
            generators.push(PlannedGenerator {
                name,
                origin: c.origin,
                share,
                files,
                instances,
            });
        }
        if generators.is_empty() {
            return Err(self.nothing());
        }
        references.sort();
        references.dedup();
        self.finding(
            Severity::Note,
            "owner, group, mode",
            format!(
                "the imported files get vars' defaults (owner root, group root, mode 0400; a user instance's owner is the user): set files.<file>.owner/group/mode in generators/<gen>.yaml as your {} configuration had them",
                self.source.as_str()
            ),
        );
        self.findings.sort_by(|a, b| {
            (a.severity, &a.subject, &a.message).cmp(&(b.severity, &b.subject, &b.message))
        });
        Ok(ImportPlan {
            source: self.source,
            generators,
            findings: self.findings,
            references,
            suggestions: self.suggestions,
            edits: edits.into_iter().collect(),
        })
    }

    fn nothing(&self) -> ImportError {
        ImportError::Nothing {
            problems: self
                .findings
                .iter()
                .filter(|f| f.severity != Severity::Note)
                .map(|f| format!("{}: {}", f.subject, f.message))
                .collect(),
        }
    }

    fn in_use(&self, name: &str) -> bool {
        self.config.instances.keys().any(|id| id.generator == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_map_to_their_age_form() {
        // ed25519 public key → X25519: checked against the scalar multiplication itself.
        let seed = [42u8; 32];
        use sha2::Digest as _;
        let h = sha2::Sha512::digest(seed);
        let scalar: [u8; 32] = h[..32].try_into().unwrap();
        let ed = curve25519_dalek::EdwardsPoint::mul_base_clamped(scalar).compress();
        let mut wire = Vec::new();
        for part in [&b"ssh-ed25519"[..], ed.as_bytes()] {
            wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
            wire.extend_from_slice(part);
        }
        use base64::Engine as _;
        let ssh = format!(
            "ssh-ed25519 {} host",
            base64::engine::general_purpose::STANDARD.encode(&wire)
        );
        let x = curve25519_dalek::MontgomeryPoint::mul_base_clamped(scalar);
        let want =
            bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age").unwrap(), x.as_bytes())
                .unwrap();
        assert_eq!(ssh_to_age(&ssh).unwrap(), want);
        assert!(crate::crypto::Recipient::parse(&want).is_ok());
        assert_eq!(ssh_to_age("ssh-rsa AAAA"), None);
        assert_eq!(ssh_to_age("age1xyz"), None);
    }

    #[test]
    fn names_from_the_source_become_vars_names() {
        assert_eq!(vars_name("api/token").as_deref(), Some("api-token"));
        assert_eq!(vars_name(".hidden..x").as_deref(), Some("hidden.x"));
        assert_eq!(vars_name("_x y").as_deref(), Some("x-y"));
        assert_eq!(vars_name("/"), None);
        assert_eq!(vars_name(""), None);
    }

    #[test]
    fn matching_ignores_comments_and_case() {
        assert_eq!(
            normalize("ssh-ed25519 AAAAC3 root@host"),
            normalize("ssh-ed25519 AAAAC3 other")
        );
        assert_eq!(normalize(" AGE1ABC "), "age1abc");
    }
}
