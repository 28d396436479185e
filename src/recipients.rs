//! Who can read what (DESIGN §4): the principals and recipient strings each secret file of an
//! instance must be encrypted to. Pure functions of the model; [`crate::crypto`] parses the
//! strings, [`crate::meta`] records them, `check` and `rekey` compare the two.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::crypto::Recipient;
use crate::model::{Config, FileDef, InstanceId, Scope};

/// Every recipient of the fleet, parsed once when the model is built (issue 9: derive once,
/// pass down); encryption borrows from here.
#[derive(Default)]
pub struct ParsedRecipients(HashMap<String, Recipient>);

impl ParsedRecipients {
    /// Keep a parsed recipient (keyed by its text as declared).
    pub fn insert(&mut self, r: Recipient) {
        self.0.entry(r.text().to_owned()).or_insert(r);
    }

    /// The parsed form of a declared recipient.
    pub fn get(&self, text: &str) -> Option<&Recipient> {
        self.0.get(text)
    }
}

impl fmt::Debug for ParsedRecipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ParsedRecipients({} recipients)", self.0.len())
    }
}

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
    // An instance holding a machine's generated key is not encrypted to that key.
    let own = config.own_generated_recipients(id);
    let set: BTreeSet<String> = principals_for(config, id, file)
        .iter()
        .flat_map(|p| principal_recipients(config, p, vault))
        .filter(|r| !own.contains(r))
        .map(str::to_owned)
        .collect();
    set.into_iter().collect()
}

/// Someone who gains or loses access to a secret, as a plan or `check` names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum Reader {
    /// The vault key (and so every admin).
    Vault,
    /// A machine's host key.
    Machine(String),
    /// A user's key.
    User(String),
    /// A recipient no declared principal has: its first characters.
    Unknown(String),
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reader::Vault => f.write_str("vault"),
            Reader::Machine(m) => write!(f, "machine {m}"),
            Reader::User(u) => write!(f, "user {u}"),
            Reader::Unknown(r) => write!(f, "unknown recipient {r}…"),
        }
    }
}

impl From<&Principal> for Reader {
    fn from(p: &Principal) -> Self {
        match p {
            Principal::Vault => Reader::Vault,
            Principal::Machine(m) => Reader::Machine(m.clone()),
            Principal::User(u) => Reader::User(u.clone()),
        }
    }
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
    ) -> Vec<Reader> {
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
                unknown.push(Reader::Unknown(r.chars().take(24).collect()));
            }
        }
        named.into_iter().map(Reader::from).chain(unknown).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAYA: &str = "age1h67d2pfa275fpg5c940mzzadc8r7t7ss3yk2gkf67xr089kxs5eqxajwvs";

    fn darwin2() -> Config {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        crate::model::load(&root.join("testdata/fleets/darwin2/vars.yaml")).unwrap()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn describe_names_owners_in_principal_order_then_unknown_keys() {
        let config = darwin2();
        let index = RecipientIndex::new(&config, "age1vault");
        let air13 = config.machines["air13"].recipients[0].clone();
        let seth_ssh = config.users["seth"].recipients[1].clone();
        let names: Vec<String> = index
            .describe(&set(&["age1nobody", &seth_ssh, &air13, "age1vault"]), None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            [
                "vault",
                "machine air13",
                "user seth",
                "unknown recipient age1nobody…"
            ]
        );
        assert!(index.describe(&BTreeSet::new(), None).is_empty());
    }

    #[test]
    fn describe_among_names_only_the_principals_that_read_the_file() {
        let config = darwin2();
        // A key two principals share: the vault recipient is maya's too.
        let index = RecipientIndex::new(&config, MAYA);
        let names = |among| -> Vec<String> {
            index
                .describe(&set(&[MAYA]), among)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(names(None), ["vault", "user maya"]);
        let maya = BTreeSet::from([Principal::User("maya".into())]);
        assert_eq!(names(Some(&maya)), ["user maya"]);
        // Owned, but by nobody among the readers: reported as unknown.
        let seth = BTreeSet::from([Principal::User("seth".into())]);
        assert_eq!(
            names(Some(&seth)),
            ["unknown recipient age1h67d2pfa275fpg5c940m…"]
        );
    }
}
