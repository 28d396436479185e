//! What this machine remembers about each store it used, outside the repository (DESIGN §4):
//! the vault recipient (and, during a rotation it began, the key being rotated in), and the
//! machines' generated recipients. Trust on first use; a change stops the command until the
//! person confirms it (`vars trust`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::VaultError;
use crate::store::Store;
use crate::{fs_util, meta};

/// Where this machine remembers the vault recipient of each store it used:
/// `known-vaults.json` in the store's state directory ([`Store::state_dir`]).
fn pins_path(store: &Store) -> Option<PathBuf> {
    Some(store.state_dir()?.join("known-vaults.json"))
}

/// The key a store is remembered by: its canonical path.
fn pin_key(store: &Store) -> String {
    std::fs::canonicalize(&store.dir)
        .unwrap_or_else(|_| store.dir.clone())
        .display()
        .to_string()
}

/// Store → the vault recipients this machine accepts for it: the vault, and during a rotation
/// this machine started also the key being rotated in (a crash between the final swap of
/// `keys/` and the update of this file must not lock this machine out).
fn read_pins(path: &Path) -> BTreeMap<String, Vec<String>> {
    let Some(value) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return BTreeMap::new();
    };
    let Some(map) = value.as_object() else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(store, v)| {
            let list = match v {
                // Written as one string before rotations were pinned too.
                serde_json::Value::String(s) => vec![s.clone()],
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            (store.clone(), list)
        })
        .collect()
}

/// Remember `recipients` as the vault (and a vault being rotated in) of `store` on this
/// machine, replacing what was known. Only for keys this machine made or rotated to, or one
/// the person confirmed. Best effort: a machine without a writable state directory just
/// cannot pin.
pub(super) fn record_pins(store: &Store, recipients: &[&str]) {
    let Some(path) = pins_path(store) else {
        return;
    };
    let mut pins = read_pins(&path);
    let want: Vec<String> = recipients.iter().map(|r| (*r).to_owned()).collect();
    if pins.get(&pin_key(store)) == Some(&want) {
        return;
    }
    pins.insert(pin_key(store), want);
    let _ = fs_util::write_atomic(&path, &meta::to_json(&pins), 0o600);
}

/// Remember `recipient` as the vault of `store` on this machine (`record_pins`).
pub fn record_pin(store: &Store, recipient: &str) {
    record_pins(store, &[recipient]);
}

/// The key of another value this machine remembers about `store`: `<store>#<what>`.
fn known_key(store: &Store, what: &str) -> String {
    format!("{}#{what}", pin_key(store))
}

/// Remember `value` for `what` of `store` (a machine's generated recipient: `what` is its
/// store path), replacing what was known.
pub fn record_known(store: &Store, what: &str, value: &str) {
    let Some(path) = pins_path(store) else {
        return;
    };
    let mut pins = read_pins(&path);
    let key = known_key(store, what);
    if pins
        .get(&key)
        .is_some_and(|v| v.len() == 1 && v[0] == value)
    {
        return;
    }
    pins.insert(key, vec![value.to_owned()]);
    let _ = fs_util::write_atomic(&path, &meta::to_json(&pins), 0o600);
}

/// Check `value` of `what` against what this machine remembers about `store`; the first use
/// records it. `Err(recorded)` when it changed.
pub fn check_known(store: &Store, what: &str, value: &str) -> Result<(), String> {
    let Some(path) = pins_path(store) else {
        return Ok(());
    };
    let pins = read_pins(&path);
    match pins.get(&known_key(store, what)) {
        Some(known) if known.iter().any(|k| k == value) => Ok(()),
        Some(known) if !known.is_empty() => Err(known.join(" or ")),
        _ => {
            record_known(store, what, value);
            Ok(())
        }
    }
}

/// Confirm that `recipient` (read from `keys/vault.pub`, or the key just unwrapped) is the
/// vault this machine last saw for `store` (DESIGN §4). The first use of a store on a machine
/// records it. `trusted` is a recipient the person confirmed on the command line
/// (`--trust-vault`), accepted and recorded when it is the one in the store.
pub fn check_pin(store: &Store, recipient: &str, trusted: Option<&str>) -> Result<(), VaultError> {
    let Some(path) = pins_path(store) else {
        return Ok(());
    };
    let pins = read_pins(&path);
    match pins.get(&pin_key(store)) {
        Some(known) if known.iter().any(|k| k == recipient) => {
            if known.len() > 1 {
                // A rotation this machine began has finished (or is being finished).
                record_pin(store, recipient);
            }
            Ok(())
        }
        Some(known) if !known.is_empty() && trusted != Some(recipient) => {
            Err(VaultError::Changed {
                path: store.vault_pub_path(),
                recorded: known.join(" or "),
                found: recipient.to_owned(),
            })
        }
        _ => {
            record_pin(store, recipient);
            Ok(())
        }
    }
}
