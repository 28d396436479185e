//! sops' file format, read in-process (DESIGN §11, `SCAN-SOPS-IMPORT.md` B): the tree of a
//! JSON or YAML file with its `sops` block, the data key unwrapped from a `sops.age[]` entry
//! with [`crate::crypto`]'s identities, every value decrypted (AES-256-GCM with sops' 32-byte
//! IVs, the path of the value as associated data) and the file's MAC checked, as `sops
//! decrypt` does. The binary store (`{"data": …, "sops": …}`), which vars' sops backend
//! writes, is the one-value case.
//!
//! `sops` stays the writer ([`super::Program::encrypt`]); reading in-process lets `vars get`,
//! `vars install`, dependency inputs, rekey and the importers read sops files without a
//! process per file and with every kind of identity vars loads (plugins, passphrase-protected
//! ssh keys), and keeps keys out of other processes.
//!
//! Keys are kept in document order (the MAC is computed over the values in that order);
//! comments are dropped, which is exact: sops leaves them out of the MAC. Files whose
//! encryption depends on comments (`encrypted_comment_regex`, `unencrypted_comment_regex`) or
//! on key groups (Shamir) are refused as unsupported.

use std::fmt;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::crypto::{self, Identities, Stanza};
use crate::secret::SecretBytes;

/// Errors reading a sops file. None carries a decrypted value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FileError {
    /// The bytes are not a sops file (not JSON/YAML, or without a valid `sops` block).
    #[error("not a sops file: {0}")]
    NotSops(String),
    /// The file uses a sops feature vars does not read.
    #[error("unsupported sops file: {0}")]
    Unsupported(String),
    /// None of the identities unwraps the data key of any `sops.age` entry.
    #[error("none of the identities ({}) decrypts the data key of this sops file (its age recipients: {})", tried.join(", "), recipients.join(", "))]
    NoKey {
        /// Where the identities came from.
        tried: Vec<String>,
        /// The first characters of each age recipient of the file.
        recipients: Vec<String>,
    },
    /// A value, the MAC or the data key does not decrypt or does not match: the file was
    /// damaged or tampered with.
    #[error("sops file is damaged or was tampered with: {0}")]
    Damaged(String),
}

/// The syntax of a sops file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON, and the binary store (`{"data": …}`).
    Json,
    /// YAML.
    Yaml,
}

/// A value of a sops tree as parsed (encrypted values are `ENC[…]` strings).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A mapping, in document order.
    Map(Vec<(String, Node)>),
    /// A sequence.
    List(Vec<Node>),
    /// A string.
    Str(String),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer beyond `i64`.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map(Node::Int).unwrap_or(Node::UInt(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Node>()? {
            items.push(v);
        }
        Ok(Node::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        // Keys as strings: sops refuses other keys, and a YAML key like `y` stays `y`.
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let v = map.next_value::<Node>()?;
            entries.push((key, v));
        }
        Ok(Node::Map(entries))
    }
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes sops hashes into the MAC for an unencrypted leaf (`sops.ToBytes`).
    fn mac_bytes(&self) -> Option<Vec<u8>> {
        Some(match self {
            Node::Str(s) => s.as_bytes().to_vec(),
            Node::Int(i) => i.to_string().into_bytes(),
            Node::UInt(u) => u.to_string().into_bytes(),
            // Go's FormatFloat(f, 'f', -1, 64): shortest round-trip digits, no exponent, as
            // Rust's Display writes them.
            Node::Float(f) => f.to_string().into_bytes(),
            Node::Bool(true) => b"True".to_vec(),
            Node::Bool(false) => b"False".to_vec(),
            Node::Null | Node::Map(_) | Node::List(_) => return None,
        })
    }
}

/// One age entry of `sops.age`.
#[derive(Debug, Clone)]
struct AgeKey {
    recipient: String,
    enc: String,
}

/// Which values sops encrypted (`sops.Tree.shouldBeEncrypted`, without the comment rules).
#[derive(Debug, Clone, Default)]
struct Rules {
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    mac_only_encrypted: bool,
}

impl Rules {
    fn encrypted(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(s) = &self.unencrypted_suffix
            && path.iter().any(|p| p.ends_with(s.as_str()))
        {
            encrypted = false;
        }
        if let Some(s) = &self.encrypted_suffix {
            encrypted = path.iter().any(|p| p.ends_with(s.as_str()));
        }
        if let Some(r) = &self.unencrypted_regex
            && path.iter().any(|p| r.is_match(p))
        {
            encrypted = false;
        }
        if let Some(r) = &self.encrypted_regex {
            encrypted = path.iter().any(|p| r.is_match(p));
        }
        encrypted
    }
}

/// A parsed sops file: its tree (without the `sops` block) and its metadata.
#[derive(Debug, Clone)]
pub struct SopsFile {
    tree: Vec<(String, Node)>,
    age: Vec<AgeKey>,
    /// One name per master key that is not age (`pgp`, `kms`, …).
    other_keys: Vec<String>,
    lastmodified: String,
    mac: String,
    rules: Rules,
}

/// The 32-byte data key every value of a sops file is encrypted with.
pub struct DataKey(Zeroizing<[u8; 32]>);

/// A decrypted value of a sops file, with its path (`["a", "b"]` for `a: {b: …}`).
pub struct Leaf {
    /// Keys from the root; items of a list share their list's path.
    pub path: Vec<String>,
    /// The value's bytes (decrypted, or as written for an unencrypted value).
    pub value: SecretBytes,
    /// Whether the file holds it encrypted.
    pub encrypted: bool,
    /// sops' type of the value: `str`, `int`, `float`, `bool`, `bytes`, `time`.
    pub kind: String,
    /// Whether it is an item of a list (sops-nix cannot address those).
    pub in_list: bool,
}

/// Whether `bytes` look like a sops JSON file rather than an age file (the two formats a
/// stored secret can have).
pub fn looks_like_sops(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// The master-key kinds of sops other than age.
const OTHER_KEY_KINDS: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

impl SopsFile {
    /// Parse a sops file of `format`.
    pub fn parse(bytes: &[u8], format: Format) -> Result<Self, FileError> {
        let root: Node = match format {
            Format::Json => serde_json::from_slice(bytes).map_err(|e| {
                FileError::NotSops(format!(
                    "not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })?,
            Format::Yaml => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| FileError::NotSops("not UTF-8 text".into()))?;
                parse_yaml(text)
                    .map_err(|e| FileError::NotSops(format!("not YAML: {}", first_line(&e))))?
            }
        };
        let Node::Map(entries) = root else {
            return Err(FileError::NotSops("the top level is not a mapping".into()));
        };
        let mut tree = Vec::with_capacity(entries.len());
        let mut sops = None;
        for (k, v) in entries {
            if k == "sops" {
                sops = Some(v);
            } else {
                tree.push((k, v));
            }
        }
        let sops = sops.ok_or_else(|| FileError::NotSops("it has no sops block".into()))?;
        Self::with_metadata(tree, &sops)
    }

    /// Parse a file of sops' binary store: JSON holding one `data` string.
    pub fn parse_binary(bytes: &[u8]) -> Result<Self, FileError> {
        let file = Self::parse(bytes, Format::Json)?;
        match file.tree.as_slice() {
            [(k, Node::Str(_))] if k == "data" => Ok(file),
            _ => Err(FileError::NotSops(
                "a file of sops' binary format holds exactly one string, data".into(),
            )),
        }
    }

    fn with_metadata(tree: Vec<(String, Node)>, sops: &Node) -> Result<Self, FileError> {
        let not_sops = |what: &str| FileError::NotSops(what.to_owned());
        if !matches!(sops, Node::Map(_)) {
            return Err(not_sops("the sops block is not a mapping"));
        }
        let text = |key: &str| sops.get(key).and_then(Node::str).map(str::to_owned);
        let mut age = Vec::new();
        match sops.get("age") {
            None | Some(Node::Null) => {}
            Some(Node::List(items)) => {
                for item in items {
                    let field = |k| item.get(k).and_then(Node::str).map(str::to_owned);
                    match (field("recipient"), field("enc")) {
                        (Some(recipient), Some(enc)) => age.push(AgeKey { recipient, enc }),
                        _ => return Err(not_sops("a sops.age entry lacks recipient or enc")),
                    }
                }
            }
            Some(_) => return Err(not_sops("sops.age is not a list")),
        }
        let mut other_keys = Vec::new();
        for kind in OTHER_KEY_KINDS {
            match sops.get(kind) {
                None | Some(Node::Null) => {}
                Some(Node::List(items)) => {
                    other_keys.extend(items.iter().map(|_| kind.to_owned()));
                }
                Some(_) => return Err(not_sops("a master key list is not a list")),
            }
        }
        if let Some(Node::List(groups)) = sops.get("key_groups")
            && !groups.is_empty()
        {
            return Err(FileError::Unsupported(
                "it uses key groups (Shamir secret sharing)".into(),
            ));
        }
        for rule in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if text(rule).is_some_and(|r| !r.is_empty()) {
                return Err(FileError::Unsupported(format!(
                    "it uses {rule}, which decides encryption by comments"
                )));
            }
        }
        let regex = |key: &str| -> Result<Option<regex::Regex>, FileError> {
            match text(key).filter(|r| !r.is_empty()) {
                None => Ok(None),
                Some(r) => regex::Regex::new(&r).map(Some).map_err(|_| {
                    FileError::Unsupported(format!("its {key} is not a regex vars reads"))
                }),
            }
        };
        let rules = Rules {
            unencrypted_suffix: text("unencrypted_suffix").filter(|s| !s.is_empty()),
            encrypted_suffix: text("encrypted_suffix").filter(|s| !s.is_empty()),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            mac_only_encrypted: matches!(sops.get("mac_only_encrypted"), Some(Node::Bool(true))),
        };
        Ok(SopsFile {
            tree,
            age,
            other_keys,
            lastmodified: text("lastmodified")
                .ok_or_else(|| not_sops("sops.lastmodified is missing"))?,
            mac: text("mac").ok_or_else(|| not_sops("sops.mac is missing"))?,
            rules,
        })
    }

    /// The `recipient` of each `sops.age` entry, as the file states it (the stanzas inside
    /// `enc` are what counts: [`SopsFile::stanzas`]).
    pub fn age_recipients(&self) -> Vec<&str> {
        self.age.iter().map(|a| a.recipient.as_str()).collect()
    }

    /// The kinds of the file's master keys that are not age (`pgp`, `kms`, …), one per key.
    pub fn other_keys(&self) -> &[String] {
        &self.other_keys
    }

    /// The age stanzas of every `sops.age` entry, then one stanza named `sops-<kind>` per
    /// master key of another kind, so that `check` counts every key that can read the file.
    pub fn stanzas(&self) -> Result<Vec<Stanza>, FileError> {
        let mut out = Vec::new();
        for a in &self.age {
            let st = crypto::header_stanzas(a.enc.as_bytes()).map_err(|_| {
                FileError::Damaged("the enc of a sops.age entry is not an age file".into())
            })?;
            out.extend(st);
        }
        out.extend(self.other_keys.iter().map(|k| Stanza {
            kind: format!("sops-{k}"),
            first_arg: None,
        }));
        Ok(out)
    }

    /// Unwrap the data key with `ids`, trying each age entry.
    pub fn data_key(&self, ids: &Identities) -> Result<DataKey, FileError> {
        for a in &self.age {
            let Ok(key) = ids.decrypt(a.enc.as_bytes()) else {
                continue;
            };
            let bytes: [u8; 32] = key.expose().try_into().map_err(|_| {
                FileError::Damaged("the data key of a sops.age entry is not 32 bytes".into())
            })?;
            return Ok(DataKey(Zeroizing::new(bytes)));
        }
        Err(FileError::NoKey {
            tried: ids.sources.clone(),
            recipients: self
                .age
                .iter()
                .map(|a| a.recipient.chars().take(24).collect())
                .collect(),
        })
    }

    /// Decrypt every value and check the MAC, as `sops decrypt` does. Values come in document
    /// order; `null`s, empty maps and empty lists have no leaf.
    pub fn decrypt(&self, key: &DataKey) -> Result<Vec<Leaf>, FileError> {
        use sha2::Digest as _;
        let mut hash = sha2::Sha512::new();
        if self.rules.mac_only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        let mut leaves = Vec::new();
        let mut path = Vec::new();
        for (k, v) in &self.tree {
            path.push(k.clone());
            self.walk(v, &mut path, false, key, &mut hash, &mut leaves)?;
            path.pop();
        }
        let want = format!("{:X}", hash.finalize());
        let (mac, _) = decrypt_value(&self.mac, key, self.lastmodified.as_bytes())
            .map_err(|_| FileError::Damaged("its MAC does not decrypt".into()))?;
        if mac.expose() != want.as_bytes() {
            return Err(FileError::Damaged(
                "its MAC does not match its values".into(),
            ));
        }
        Ok(leaves)
    }

    fn walk(
        &self,
        node: &Node,
        path: &mut Vec<String>,
        in_list: bool,
        key: &DataKey,
        hash: &mut sha2::Sha512,
        leaves: &mut Vec<Leaf>,
    ) -> Result<(), FileError> {
        use sha2::Digest as _;
        match node {
            Node::Map(entries) => {
                for (k, v) in entries {
                    path.push(k.clone());
                    self.walk(v, path, in_list, key, hash, leaves)?;
                    path.pop();
                }
            }
            Node::List(items) => {
                for v in items {
                    self.walk(v, path, true, key, hash, leaves)?;
                }
            }
            Node::Null => {}
            scalar => {
                let encrypted = self.rules.encrypted(path);
                let (value, kind) = if encrypted {
                    let Node::Str(text) = scalar else {
                        return Err(FileError::Damaged(format!(
                            "the value at {} should be encrypted but is not a string",
                            path.join(".")
                        )));
                    };
                    let aad = format!("{}:", path.join(":"));
                    decrypt_value(text, key, aad.as_bytes()).map_err(|e| {
                        FileError::Damaged(format!("the value at {}: {e}", path.join(".")))
                    })?
                } else {
                    let bytes = scalar.mac_bytes().expect("scalars have bytes");
                    let kind = match scalar {
                        Node::Str(_) => "str",
                        Node::Bool(_) => "bool",
                        Node::Float(_) => "float",
                        _ => "int",
                    };
                    (SecretBytes::new(bytes), kind.to_owned())
                };
                if !self.rules.mac_only_encrypted || encrypted {
                    hash.update(value.expose());
                }
                leaves.push(Leaf {
                    path: path.clone(),
                    value,
                    encrypted,
                    kind,
                    in_list,
                });
            }
        }
        Ok(())
    }

    /// The plaintext of a file of sops' binary store, MAC checked.
    pub fn decrypt_binary(&self, key: &DataKey) -> Result<SecretBytes, FileError> {
        let mut leaves = self.decrypt(key)?;
        match (leaves.len(), leaves.first()) {
            (1, Some(l)) if l.path == ["data"] && l.encrypted => Ok(leaves.remove(0).value),
            _ => Err(FileError::NotSops(
                "a file of sops' binary format holds exactly one encrypted string, data".into(),
            )),
        }
    }
}

/// sops' `MACOnlyEncryptedInitialization`: the hash of a `mac_only_encrypted` file starts
/// with these bytes, so its MAC differs from a file's without the setting.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Decrypt one `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` value (an empty string is sops'
/// empty value) with associated data `aad`. Returns the bytes and the type.
fn decrypt_value(
    text: &str,
    key: &DataKey,
    aad: &[u8],
) -> Result<(SecretBytes, String), &'static str> {
    if text.is_empty() {
        return Ok((SecretBytes::new(Vec::new()), "str".into()));
    }
    let body = text
        .strip_prefix("ENC[AES256_GCM,data:")
        .and_then(|r| r.strip_suffix(']'))
        .ok_or("it is not an ENC[AES256_GCM,…] value")?;
    let (data, rest) = body.split_once(",iv:").ok_or("it has no iv")?;
    let (iv, rest) = rest.split_once(",tag:").ok_or("it has no tag")?;
    let (tag, kind) = rest.split_once(",type:").ok_or("it has no type")?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut msg = b64.decode(data).map_err(|_| "its data is not base64")?;
    let iv = b64.decode(iv).map_err(|_| "its iv is not base64")?;
    let tag = b64.decode(tag).map_err(|_| "its tag is not base64")?;
    if iv.len() != 32 || tag.len() != 16 {
        return Err("its iv or tag has the wrong length");
    }
    if !matches!(
        kind,
        "str" | "int" | "float" | "bool" | "bytes" | "time" | "comment"
    ) {
        return Err("it has an unknown type");
    }
    msg.extend_from_slice(&tag);
    let cipher = AesGcm::<Aes256, U32>::new_from_slice(&key.0[..]).expect("the key is 32 bytes");
    let plain = cipher
        .decrypt(Nonce::<U32>::from_slice(&iv), Payload { msg: &msg, aad })
        .map_err(|_| "it does not decrypt (wrong key, or the value or its place was changed)")?;
    Ok((SecretBytes::new(plain), kind.to_owned()))
}

/// YAML the way sops (go-yaml, YAML 1.2) reads it: only `true`/`false` are booleans, and
/// the size limits of vars' own YAML (a huge or alias-bombed file is an error).
fn parse_yaml(text: &str) -> Result<Node, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 2_000_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_nodes: 1_000_000,
            max_depth: 64,
            max_total_scalar_bytes: 64 * 1024 * 1024,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_alias_expansions_per_anchor: 100,
        },
        strict_booleans: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options(text, options)
}

fn first_line(e: &impl fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Read the plaintext of a stored secret of the sops backend with `ids`.
pub fn open_binary(bytes: &[u8], ids: &Identities) -> Result<SecretBytes, FileError> {
    let file = SopsFile::parse_binary(bytes)?;
    let key = file.data_key(ids)?;
    file.decrypt_binary(&key)
}

#[cfg(test)]
mod tests;
