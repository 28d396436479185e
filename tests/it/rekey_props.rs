//! Rekey properties (DESIGN §4) over random sequences of fleet changes: users and machines
//! join, users leave, users become admins or stop being admins, the vault is rotated. After
//! each change `vars rekey --yes` and `vars generate` run, and then:
//!
//! - every secret is readable by exactly the principals §4 names (computed here from the
//!   test's own model of the fleet, not from the library), and by nobody else — in particular
//!   by no removed user, whose key decrypts nothing that is left;
//! - exactly the current admins can open `keys/vault.age` (a removed admin cannot);
//! - no value changes through a rekey, and a ciphertext is rewritten only when its readers
//!   changed or the vault key was rotated (nothing that is not stale is re-encrypted);
//! - `vars check` passes.
//!
//! Every principal has a fresh age identity made with `vars::crypto::new_identity`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use proptest::prelude::*;
use vars::crypto::Identities;
use vars::store::Store;

use crate::common::{self, TestEnv};

/// A change to the fleet. Indices pick among the current users/machines (modulo their
/// number); a change that is impossible (removing the last admin) does nothing.
#[derive(Debug, Clone)]
enum Op {
    /// A new user, optionally listed as a user of a machine.
    AddUser { machine: Option<u8> },
    /// A new machine, optionally with a user.
    AddMachine { user: Option<u8> },
    /// A user leaves (from users, admins and every machine).
    RemoveUser(u8),
    /// A user becomes an admin.
    MakeAdmin(u8),
    /// An admin stops being one (stays a user).
    RemoveAdmin(u8),
    /// `rekey --rotate-vault`.
    Rotate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::option::of(any::<u8>()).prop_map(|machine| Op::AddUser { machine }),
        proptest::option::of(any::<u8>()).prop_map(|user| Op::AddMachine { user }),
        any::<u8>().prop_map(Op::RemoveUser),
        any::<u8>().prop_map(Op::MakeAdmin),
        any::<u8>().prop_map(Op::RemoveAdmin),
        Just(Op::Rotate),
    ]
}

struct Key {
    /// The identity file.
    file: PathBuf,
    recipient: String,
}

/// The test's model of the fleet.
struct World {
    env: TestEnv,
    keys: BTreeMap<String, Key>,
    users: BTreeSet<String>,
    /// Machine → its users.
    machines: BTreeMap<String, BTreeSet<String>>,
    admins: BTreeSet<String>,
    removed: BTreeSet<String>,
    next: usize,
}

const GENERATORS: &str = r#"
tags:
  all: { generators: [seed, host] }
generators:
  seed:
    share: true
    files:
      seed: {}
      ca: { deploy: false }
      id: { secret: false }
    script: |
      head -c 16 /dev/urandom | base64 > "$out/seed"
      head -c 16 /dev/urandom | base64 > "$out/ca"
      head -c 8 /dev/urandom | base64 > "$out/id"
  host:
    files:
      key: {}
      pub: { secret: false }
    script: |
      head -c 16 /dev/urandom | base64 > "$out/key"
      echo "$machine" > "$out/pub"
  token:
    files:
      token: {}
    script: |
      head -c 16 /dev/urandom | base64 > "$out/token"
"#;

impl World {
    fn new() -> Self {
        let mut w = World {
            env: TestEnv::empty(),
            keys: BTreeMap::new(),
            users: BTreeSet::new(),
            machines: BTreeMap::new(),
            admins: BTreeSet::new(),
            removed: BTreeSet::new(),
            next: 0,
        };
        let admin = w.new_user();
        w.admins.insert(admin.clone());
        let user = w.new_user();
        let m0 = w.new_machine();
        let m1 = w.new_machine();
        w.machines.get_mut(&m0).unwrap().insert(user);
        w.machines.get_mut(&m1).unwrap().insert(admin);
        w
    }

    fn new_key(&mut self, name: &str) {
        let (secret, recipient) = vars::crypto::new_identity();
        let file = self.env.dir.path().join("keys").join(format!("{name}.txt"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, secret.expose()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.keys.insert(name.to_owned(), Key { file, recipient });
    }

    fn new_user(&mut self) -> String {
        let name = format!("u{}", self.next);
        self.next += 1;
        self.new_key(&name);
        self.users.insert(name.clone());
        name
    }

    fn new_machine(&mut self) -> String {
        let name = format!("m{}", self.next);
        self.next += 1;
        self.new_key(&name);
        self.machines.insert(name.clone(), BTreeSet::new());
        name
    }

    fn pick(set: impl IntoIterator<Item = String>, i: u8) -> Option<String> {
        let v: Vec<String> = set.into_iter().collect();
        (!v.is_empty()).then(|| v[usize::from(i) % v.len()].clone())
    }

    /// Apply `op`; returns the `rekey` flags that state its intent.
    fn apply(&mut self, op: &Op) -> Vec<String> {
        match *op {
            Op::AddUser { machine } => {
                let u = self.new_user();
                if let Some(m) = machine.and_then(|i| Self::pick(self.machines.keys().cloned(), i))
                {
                    self.machines.get_mut(&m).unwrap().insert(u.clone());
                }
                vec!["--add-user".into(), u]
            }
            Op::AddMachine { user } => {
                let m = self.new_machine();
                if let Some(u) = user.and_then(|i| Self::pick(self.users.clone(), i)) {
                    self.machines.get_mut(&m).unwrap().insert(u);
                }
                vec!["--add-machine".into(), m]
            }
            Op::RemoveUser(i) => {
                let u = Self::pick(self.users.clone(), i).expect("an admin is always left");
                if self.admins.contains(&u) && self.admins.len() == 1 {
                    return Vec::new();
                }
                self.users.remove(&u);
                self.admins.remove(&u);
                for users in self.machines.values_mut() {
                    users.remove(&u);
                }
                self.removed.insert(u.clone());
                vec!["--remove-user".into(), u]
            }
            Op::MakeAdmin(i) => {
                let u = Self::pick(self.users.clone(), i).unwrap();
                self.admins.insert(u);
                Vec::new()
            }
            Op::RemoveAdmin(i) => {
                let a = Self::pick(self.admins.clone(), i).unwrap();
                if self.admins.len() > 1 {
                    self.admins.remove(&a);
                }
                Vec::new()
            }
            Op::Rotate => vec!["--rotate-vault".into()],
        }
    }

    fn write(&self) {
        let quote = |v: &BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>().join(", ");
        let mut y = String::from("version: 1\nsettings: { store: vars }\n");
        y += &format!("admins: [{}]\nusers:\n", quote(&self.admins));
        for u in &self.users {
            y += &format!(
                "  {u}: {{ recipients: [\"{}\"], generators: [token] }}\n",
                self.keys[u].recipient
            );
        }
        y += "machines:\n";
        for (m, users) in &self.machines {
            y += &format!(
                "  {m}: {{ recipients: [\"{}\"], tags: [all], users: [{}] }}\n",
                self.keys[m].recipient,
                quote(users)
            );
        }
        y += GENERATORS;
        std::fs::write(self.env.root().join("vars.yaml"), y).unwrap();
    }

    /// Who must read a stored secret (`vault` stands for the vault key), by DESIGN §4.
    fn expected_readers(&self, rel: &str) -> BTreeSet<String> {
        let parts: Vec<&str> = rel.split('/').collect();
        let mut out: BTreeSet<String> = ["vault".to_owned()].into();
        match parts.as_slice() {
            ["shared", "seed", "ca.age"] => {}
            ["shared", "seed", "seed.age"] => out.extend(self.machines.keys().cloned()),
            ["machines", m, "host", "key.age"] => {
                out.insert(m.to_string());
            }
            ["users", u, "token", "token.age"] => {
                out.insert(u.to_string());
                out.extend(
                    self.machines
                        .iter()
                        .filter(|(_, users)| users.contains(*u))
                        .map(|(m, _)| m.clone()),
                );
            }
            _ => panic!("unexpected secret {rel}"),
        }
        out
    }

    fn ids(&self, name: &str) -> Identities {
        let mut ids = Identities::default();
        ids.add_file(&self.keys[name].file).unwrap();
        ids
    }

    fn vars(&self, args: &[String]) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.env.ok(&args);
    }
}

/// Every secret's ciphertext and plaintext (decrypted with the vault), by relative path.
struct Snapshot {
    vault: String,
    secrets: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    readers: BTreeMap<String, BTreeSet<String>>,
}

/// Check the readers of every secret and of the vault; return what the store holds.
fn check_readers(w: &World, admin: &str) -> Snapshot {
    let store = Store::new(w.env.store()).with_state_dir(None);
    let vault_key = vars::vault::unwrap_vault(&store, &w.ids(admin)).unwrap();
    let mut vault = Identities::default();
    vault.add_vault(&vault_key);
    // Exactly the current admins open the vault.
    let vault_age = std::fs::read(store.vault_age_path()).unwrap();
    for name in w.keys.keys() {
        assert_eq!(
            w.ids(name).decrypt(&vault_age).is_ok(),
            w.admins.contains(name),
            "{name} and keys/vault.age (admins: {:?})",
            w.admins
        );
    }
    assert!(!w.env.store().join("keys/next.age").exists());
    let mut snap = Snapshot {
        vault: vault_key.recipient(),
        secrets: BTreeMap::new(),
        readers: BTreeMap::new(),
    };
    for file in common::walk(&w.env.store()) {
        let rel = file
            .strip_prefix(w.env.store())
            .unwrap()
            .display()
            .to_string();
        if !rel.ends_with(".age") || rel.starts_with("keys/") {
            continue;
        }
        let ct = std::fs::read(&file).unwrap();
        let plain = vault
            .decrypt(&ct)
            .unwrap_or_else(|e| panic!("the vault cannot read {rel}: {e}"));
        let mut readers: BTreeSet<String> = ["vault".to_owned()].into();
        for name in w.keys.keys() {
            if w.ids(name).decrypt(&ct).is_ok() {
                readers.insert(name.clone());
            }
        }
        let want = w.expected_readers(&rel);
        assert_eq!(readers, want, "who reads {rel}");
        for r in &w.removed {
            assert!(!readers.contains(r), "removed user {r} reads {rel}");
        }
        snap.readers.insert(rel.clone(), want);
        snap.secrets.insert(rel, (ct, plain.expose().to_vec()));
    }
    // Every declared instance exists.
    let expected_secrets = 2 + w.machines.len() + w.users.len();
    assert_eq!(
        snap.secrets.len(),
        expected_secrets,
        "{:?}",
        snap.secrets.keys()
    );
    snap
}

fn run_sequence(ops: &[Op]) {
    let mut w = World::new();
    w.write();
    let admin = w.admins.first().unwrap().clone();
    let key = w.keys[&admin].file.display().to_string();
    w.vars(&["generate".into(), "-i".into(), key]);
    w.env.ok(&["check"]);
    let mut before = check_readers(&w, &admin);
    for op in ops {
        let old_admins = w.admins.clone();
        let flags = w.apply(op);
        w.write();
        // An admin both before and after the change runs the commands.
        let admin = old_admins.intersection(&w.admins).next().unwrap().clone();
        let key = w.keys[&admin].file.display().to_string();
        let mut rekey = vec!["rekey".to_owned(), "--yes".into(), "-i".into(), key.clone()];
        rekey.extend(flags);
        w.vars(&rekey);
        w.vars(&["generate".into(), "-i".into(), key]);
        let out = w.env.vars(&["check"]);
        assert!(
            out.status.success(),
            "check after {op:?}:\n{}",
            common::stderr(&out)
        );
        let after = check_readers(&w, &admin);
        let rotated = after.vault != before.vault;
        let must_rotate = matches!(op, Op::Rotate) || old_admins.difference(&w.admins).count() > 0;
        assert_eq!(rotated, must_rotate, "vault rotation after {op:?}");
        for (rel, (ct, plain)) in &before.secrets {
            let Some((ct_now, plain_now)) = after.secrets.get(rel) else {
                let owner = rel.strip_prefix("users/").and_then(|r| r.split('/').next());
                assert!(
                    owner.is_some_and(|u| w.removed.contains(u)),
                    "{rel} vanished after {op:?}"
                );
                continue;
            };
            assert!(plain == plain_now, "{rel} changed its value after {op:?}");
            let stale = rotated || before.readers[rel] != after.readers[rel];
            assert_eq!(
                ct != ct_now,
                stale,
                "{rel} after {op:?}: re-encrypted exactly when stale"
            );
        }
        before = after;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10,
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rekey_gives_exactly_the_declared_readers(ops in proptest::collection::vec(op(), 1..5)) {
        if common::require_tool("bwrap", "apt-get install bubblewrap") {
            run_sequence(&ops);
        }
    }
}

/// The sequence that exercises every kind of change once, always run.
#[test]
fn every_change_once() {
    if !common::require_tool("bwrap", "apt-get install bubblewrap") {
        return;
    }
    run_sequence(&[
        Op::AddUser { machine: Some(0) },
        Op::AddMachine { user: Some(1) },
        Op::MakeAdmin(1),
        Op::RemoveAdmin(0),
        Op::RemoveUser(0),
        Op::Rotate,
    ]);
}
