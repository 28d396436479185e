//! Who can read what (DESIGN §4): the principals and recipient strings each secret file of an
//! instance must be encrypted to. Pure functions of the model; [`crate::crypto`] parses the
//! strings, [`crate::meta`] records them, `check` and `rekey` compare the two.

use std::collections::{BTreeSet, HashMap};
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

/// Names the principals behind recipient strings (for plans and `check` reports). Built once
/// per run: naming the recipients of thousands of secrets must not scan every principal each
/// time.
pub struct RecipientIndex<'a> {
    /// Each recipient string's owners, in [`Principal`] order (vault, machines, users).
    owners: HashMap<&'a str, Vec<Principal>>,
}

impl<'a> RecipientIndex<'a> {
    /// Index the recipients of the vault and of every declared machine and user.
    pub fn new(config: &'a Config, vault: &'a str) -> Self {
        let mut owners: HashMap<&str, Vec<Principal>> = HashMap::new();
        let all = std::iter::once(Principal::Vault)
            .chain(config.machines.keys().cloned().map(Principal::Machine))
            .chain(config.users.keys().cloned().map(Principal::User));
        for p in all {
            for r in principal_recipients(config, &p, vault) {
                owners.entry(r).or_default().push(p.clone());
            }
        }
        RecipientIndex { owners }
    }

    /// The principals owning any of `recipients`, then each recipient nobody owns. With
    /// `among`, only those principals are considered (a key two principals share is named
    /// after the one that reads the file).
    pub fn describe(
        &self,
        recipients: &BTreeSet<String>,
        among: Option<&BTreeSet<Principal>>,
    ) -> Vec<String> {
        let mut named: BTreeSet<&Principal> = BTreeSet::new();
        let mut unknown = Vec::new();
        for r in recipients {
            let mut owned = false;
            let owners = self.owners.get(r.as_str()).into_iter().flatten();
            for p in owners.filter(|p| among.is_none_or(|a| a.contains(*p))) {
                named.insert(p);
                owned = true;
            }
            if !owned {
                let short: String = r.chars().take(24).collect();
                unknown.push(format!("unknown recipient {short}…"));
            }
        }
        named
            .iter()
            .map(ToString::to_string)
            .chain(unknown)
            .collect()
    }
}
