//! The bookkeeping files of the store (DESIGN §3): `meta.json` per instance and
//! `manifest.json` per machine and per user. Both are deterministic (sorted keys, no
//! timestamps), carry a format version, and never contain secret material.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::NeededFor;
use crate::store::layout::PrincipalKind;

/// Version of `meta.json` and `manifest.json`.
pub const META_FORMAT: u32 = 1;

/// `meta.json`: what an instance was generated from and to whom its secrets are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Meta {
    /// `sha256:` of the generator definition at generation time (warnings only).
    pub definition_hash: String,
    /// Dependency instance path → its `generation` at the time this instance was generated.
    pub dependencies: BTreeMap<String, String>,
    /// Per declared file.
    pub files: BTreeMap<String, MetaFile>,
    /// Format version.
    pub format: u32,
    /// A random id, new each time the instance is (re)generated or `vars set`; dependents
    /// record it, so a change here makes them stale. Unchanged by re-encryption.
    pub generation: String,
    /// Generator name.
    pub generator: String,
    /// `machine:<name>`, `user:<name>` or `shared`.
    pub scope: String,
    /// `sha256:` of the generator's `validation` value.
    pub validation_hash: String,
}

/// One file in `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetaFile {
    /// false: vault only.
    pub deploy: bool,
    /// Who can read it, by name (`machine:m`, `user:u`, `vault`), secrets only: lets `rekey`
    /// say what a removed user could read after the user is gone from vars.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers: Option<Vec<String>>,
    /// Sorted recipients the `.age` file is encrypted to (secrets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<String>>,
    /// Encrypted or not.
    pub secret: bool,
    /// `sha256:` of a public file's content (public files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `manifest.json`: every file one machine or user receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Generator → its files this principal receives (own scope and shared).
    pub generators: BTreeMap<String, ManifestGenerator>,
    /// `machine` or `user`.
    pub kind: PrincipalKind,
    /// The machine or user name.
    pub name: String,
    /// Machine manifests only: user name → that user's instances deployed to this machine.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, BTreeMap<String, ManifestGenerator>>,
}

/// The files of one generator in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManifestGenerator {
    /// File name → where it is and how to install it.
    pub files: BTreeMap<String, ManifestFile>,
}

/// One file in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ManifestFile {
    /// Group for `vars install`; `null` (user instances) means the owner's primary group.
    pub group: Option<String>,
    /// Octal mode, e.g. `"0400"`.
    pub mode: String,
    /// Install phase.
    pub needed_for: NeededFor,
    /// Owner for `vars install`.
    pub owner: String,
    /// Path relative to the store (`machines/m/gen/key.age`).
    pub path: String,
    /// Encrypted or not.
    pub secret: bool,
    /// `sha256:` of a public file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Serialize as the store keeps it: pretty JSON with sorted keys and a final newline.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Through serde_json::Value, whose maps are sorted: key order never depends on field order.
    let v = serde_json::to_value(value).expect("meta types serialize");
    let mut out = serde_json::to_vec_pretty(&v).expect("JSON values serialize");
    out.push(b'\n');
    out
}

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_json_is_sorted_and_round_trips() {
        let m = Meta {
            definition_hash: "sha256:d".into(),
            dependencies: BTreeMap::from([("shared/ca".into(), "abc".into())]),
            files: BTreeMap::from([(
                "key".into(),
                MetaFile {
                    deploy: true,
                    readers: Some(vec!["vault".into()]),
                    recipients: Some(vec!["age1x".into()]),
                    secret: true,
                    sha256: None,
                },
            )]),
            format: META_FORMAT,
            generation: "g".into(),
            generator: "ssh".into(),
            scope: "machine:cinnabar".into(),
            validation_hash: "sha256:v".into(),
        };
        let json = to_json(&m);
        let text = String::from_utf8(json.clone()).unwrap();
        let keys: Vec<usize> = [
            "definition-hash",
            "dependencies",
            "files",
            "format",
            "generation",
            "generator",
            "scope",
            "validation-hash",
        ]
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(serde_json::from_slice::<Meta>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Meta>("{\"format\": 1}").is_err());
    }
}
