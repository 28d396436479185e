//! The names of things in the store (DESIGN §3), as pure functions: where an instance lives,
//! what a stored file is called for each backend, and the bookkeeping and key files. Every
//! other module asks here instead of spelling `.age` or `machines/` itself, so the layout has
//! one owner and a second backend (`<file>.sops`) one place to go.

use crate::model::{InstanceId, Scope};
use crate::spec::Backend;

/// An instance's bookkeeping file.
pub const META_FILE: &str = "meta.json";
/// A machine's or user's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The directory of the vault key files.
pub const KEYS_DIR: &str = "keys";
/// The directories instances live in: `machines/<m>/<gen>`, `users/<u>/<gen>`, `shared/<gen>`.
pub const MACHINES_DIR: &str = "machines";
/// See [`MACHINES_DIR`].
pub const USERS_DIR: &str = "users";
/// See [`MACHINES_DIR`].
pub const SHARED_DIR: &str = "shared";

/// The file extension of a secret written by `backend`.
pub fn secret_suffix(backend: Backend) -> &'static str {
    match backend {
        Backend::Age => ".age",
        Backend::Sops => ".sops",
    }
}

/// The backend that is not `backend` (a store being converted has files of both).
pub fn other_backend(backend: Backend) -> Backend {
    match backend {
        Backend::Age => Backend::Sops,
        Backend::Sops => Backend::Age,
    }
}

/// The name a declared file is stored under in its instance directory: `<file>.age` (or
/// `<file>.sops`) for a secret, `<file>` for a public file.
pub fn stored_name(file: &str, secret: bool, backend: Backend) -> String {
    if secret {
        format!("{file}{}", secret_suffix(backend))
    } else {
        file.to_owned()
    }
}

/// The declared file and backend behind a stored secret's name (`key.age` → `("key", Age)`);
/// `None` for a name without a secret suffix.
pub fn parse_secret_name(name: &str) -> Option<(&str, Backend)> {
    [Backend::Age, Backend::Sops].into_iter().find_map(|b| {
        name.strip_suffix(secret_suffix(b))
            .filter(|f| !f.is_empty())
            .map(|f| (f, b))
    })
}

/// The path of a machine's or user's manifest relative to the store
/// (`machines/<m>/manifest.json`).
pub fn manifest_rel(kind: PrincipalKind, name: &str) -> String {
    format!("{}/{name}/{MANIFEST_FILE}", kind.dir())
}

/// Whose manifest: a machine's or a user's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    /// `machines/<m>/manifest.json`.
    Machine,
    /// `users/<u>/manifest.json`.
    User,
}

impl PrincipalKind {
    /// The store directory of this kind (`machines`, `users`).
    pub fn dir(self) -> &'static str {
        match self {
            PrincipalKind::Machine => MACHINES_DIR,
            PrincipalKind::User => USERS_DIR,
        }
    }

    /// The word used in manifests and messages (`machine`, `user`).
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Machine => "machine",
            PrincipalKind::User => "user",
        }
    }
}

/// The instance whose directory is `rel` (`machines/m/gen`, `users/u/gen`, `shared/gen`),
/// if `rel` is one; names are checked (DESIGN §2).
pub fn parse_instance_rel(rel: &str) -> Option<InstanceId> {
    let parts: Vec<&str> = rel.split('/').collect();
    let named = |s: &&str| crate::model::check_name(s).is_ok();
    let (scope, generator) = match parts.as_slice() {
        [SHARED_DIR, g] => (Scope::Shared, *g),
        [MACHINES_DIR, m, g] if named(m) => (Scope::Machine((*m).to_owned()), *g),
        [USERS_DIR, u, g] if named(u) => (Scope::User((*u).to_owned()), *g),
        _ => return None,
    };
    named(&generator).then(|| InstanceId {
        scope,
        generator: generator.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_round_trip() {
        for b in [Backend::Age, Backend::Sops] {
            let n = stored_name("key", true, b);
            assert_eq!(parse_secret_name(&n), Some(("key", b)));
        }
        assert_eq!(stored_name("key.pub", false, Backend::Sops), "key.pub");
        assert_eq!(parse_secret_name("key.pub"), None);
        assert_eq!(parse_secret_name(".age"), None);
    }

    #[test]
    fn instance_paths_parse_back() {
        for rel in ["machines/m1/ssh", "users/alice/pw", "shared/ca"] {
            assert_eq!(parse_instance_rel(rel).unwrap().to_string(), rel);
        }
        for bad in [
            "machines/m1",
            "shared/../x",
            "users/.u/g",
            "keys/vault",
            "machines/m/g/extra",
        ] {
            assert!(parse_instance_rel(bad).is_none(), "{bad}");
        }
        assert_eq!(
            manifest_rel(PrincipalKind::User, "alice"),
            "users/alice/manifest.json"
        );
    }
}
