//! Who can read what (DESIGN §4): the principals and recipient strings each secret file of an
//! instance must be encrypted to. Pure functions of the model; [`crate::crypto`] parses the
//! strings, [`crate::meta`] records them, `check` and `rekey` compare the two.

use std::collections::BTreeSet;
use std::fmt;

use crate::model::{Config, FileDef, InstanceId, Scope};

/// Someone who can decrypt a secret.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Principal {
    /// The store's vault key (and through it every admin).
    Vault,
    /// A machine's host key(s).
    Machine(String),
    /// A user's key(s).
    User(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Vault => f.write_str("vault"),
            Principal::Machine(m) => write!(f, "machine {m}"),
            Principal::User(u) => write!(f, "user {u}"),
        }
    }
}

/// The principals that receive the deployed files of an instance (without the vault).
pub fn readers(config: &Config, id: &InstanceId) -> BTreeSet<Principal> {
    let mut out = BTreeSet::new();
    match &id.scope {
        Scope::Machine(m) => {
            out.insert(Principal::Machine(m.clone()));
        }
        Scope::User(u) => {
            out.insert(Principal::User(u.clone()));
            for (name, m) in &config.machines {
                if m.users.contains(u) {
                    out.insert(Principal::Machine(name.clone()));
                }
            }
        }
        Scope::Shared => {
            let inst = &config.instances[id];
            out.extend(inst.machines.iter().cloned().map(Principal::Machine));
            out.extend(inst.users.iter().cloned().map(Principal::User));
        }
    }
    out
}

/// The principals a file must be encrypted to, vault included.
pub fn principals_for(config: &Config, id: &InstanceId, file: &FileDef) -> BTreeSet<Principal> {
    let mut out = if file.deploy {
        readers(config, id)
    } else {
        BTreeSet::new()
    };
    out.insert(Principal::Vault);
    out
}

impl Principal {
    /// The label recorded in meta.json: `vault`, `machine:<m>`, `user:<u>`.
    pub fn label(&self) -> String {
        match self {
            Principal::Vault => "vault".into(),
            Principal::Machine(m) => format!("machine:{m}"),
            Principal::User(u) => format!("user:{u}"),
        }
    }
}

/// The labels of everyone who reads a file.
pub fn reader_labels(config: &Config, id: &InstanceId, file: &FileDef) -> Vec<String> {
    principals_for(config, id, file)
        .iter()
        .map(Principal::label)
        .collect()
}

/// The recipient strings of a principal.
pub fn principal_recipients<'a>(config: &'a Config, p: &Principal, vault: &'a str) -> Vec<&'a str> {
    match p {
        Principal::Vault => vec![vault],
        Principal::Machine(m) => config.machines[m]
            .recipients
            .iter()
            .map(String::as_str)
            .collect(),
        Principal::User(u) => config.users[u]
            .recipients
            .iter()
            .map(String::as_str)
            .collect(),
    }
}

/// The sorted, de-duplicated recipient strings a secret file must be encrypted to.
pub fn recipients_for(
    config: &Config,
    id: &InstanceId,
    file: &FileDef,
    vault: &str,
) -> Vec<String> {
    let set: BTreeSet<String> = principals_for(config, id, file)
        .iter()
        .flat_map(|p| principal_recipients(config, p, vault))
        .map(str::to_owned)
        .collect();
    set.into_iter().collect()
}

/// Name the principals behind a set of recipient strings (for plans and `check` reports).
/// With `among`, only those principals are considered (a key two principals share is named
/// after the one that reads the file).
pub fn describe(
    config: &Config,
    recipients: &BTreeSet<String>,
    vault: &str,
    among: Option<&BTreeSet<Principal>>,
) -> Vec<String> {
    let mut names = Vec::new();
    let mut matched = BTreeSet::new();
    let mut all: Vec<Principal> = vec![Principal::Vault];
    all.extend(config.machines.keys().cloned().map(Principal::Machine));
    all.extend(config.users.keys().cloned().map(Principal::User));
    all.retain(|p| among.is_none_or(|a| a.contains(p)));
    for p in all {
        let rs = principal_recipients(config, &p, vault);
        let hits: Vec<&str> = rs
            .iter()
            .copied()
            .filter(|r| recipients.contains(*r))
            .collect();
        if !hits.is_empty() {
            matched.extend(hits.iter().map(|s| s.to_string()));
            names.push(p.to_string());
        }
    }
    for r in recipients.difference(&matched) {
        let short: String = r.chars().take(24).collect();
        names.push(format!("unknown recipient {short}…"));
    }
    names
}
