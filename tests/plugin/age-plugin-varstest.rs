//! `age-plugin-varstest`: a minimal age plugin for vars' tests, standing in for a hardware key
//! (age-plugin-yubikey) in `tests/it/plugin.rs`. It is a cargo example, so `cargo install` never
//! installs it; the test copies it onto a private `PATH`.
//!
//! - Identity `AGE-PLUGIN-VARSTEST-1…` holds a 32-byte X25519 secret, recipient `age1varstest1…`
//!   its public key; `age-plugin-varstest --generate` prints a new identity file.
//! - Its stanza is age's X25519 stanza under the tag `varstest`, wrapped and unwrapped by the
//!   age crate.
//! - Run any other way it does nothing: `cargo test --all-targets` builds examples as tests and
//!   runs them (this one has no harness), with test filters as arguments.
//! - It counts: every `identity-v1` session appends `session` to `$VARSTEST_PLUGIN_LOG`, every
//!   file key it unwraps `unwrap` (a hardware key's touch), every file key it wraps `wrap`. And
//!   it sends the message `varstest: touch your key` for each unwrap, as a hardware plugin asks.
//! - It reports what it inherited: each run as a plugin appends `env NAME=VALUE` for every
//!   `VARS_PROMPT_…` variable in its environment (none may reach it: review 1, finding 10).

use std::collections::{HashMap, HashSet};
use std::io::{self, Write as _};
use std::str::FromStr as _;

use age::secrecy::ExposeSecret as _;
use age::{Identity as _, Recipient as _};
use age_core::format::{FileKey, Stanza};
use age_plugin::identity::{self, IdentityPluginV1};
use age_plugin::recipient::{self, RecipientPluginV1};
use age_plugin::{Callbacks, PluginHandler, run_state_machine};

const NAME: &str = "varstest";
const TAG: &str = "varstest";

fn log(event: &str) {
    if let Some(path) = std::env::var_os("VARSTEST_PLUGIN_LOG") {
        // One short write per line with O_APPEND: lines of concurrent plugins do not mix.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("the plugin log can be opened");
        f.write_all(format!("{event}\n").as_bytes())
            .expect("the plugin log can be written");
    }
}

fn bech32(hrp: &str, bytes: &[u8]) -> String {
    age_core::primitives::bech32_encode(bech32::Hrp::parse_unchecked(hrp), bytes)
}

fn x25519_identity(secret: &[u8]) -> Option<age::x25519::Identity> {
    age::x25519::Identity::from_str(&bech32("age-secret-key-", secret).to_uppercase()).ok()
}

fn x25519_recipient(public: &[u8]) -> Option<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(&bech32("age", public)).ok()
}

fn public_bytes(identity: &age::x25519::Identity) -> Vec<u8> {
    let text = identity.to_public().to_string();
    let (_, bytes) = bech32::decode(&text).expect("age prints bech32");
    bytes
}

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = Recipients;
    type IdentityV1 = Identities;

    fn recipient_v1(self) -> io::Result<Recipients> {
        Ok(Recipients(Vec::new()))
    }

    fn identity_v1(self) -> io::Result<Identities> {
        log("session");
        Ok(Identities(Vec::new()))
    }
}

struct Recipients(Vec<age::x25519::Recipient>);

impl RecipientPluginV1 for Recipients {
    fn add_recipient(
        &mut self,
        index: usize,
        _: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        let r = x25519_recipient(bytes).ok_or(recipient::Error::Recipient {
            index,
            message: "not a varstest recipient".into(),
        })?;
        self.0.push(r);
        Ok(())
    }

    fn add_identity(
        &mut self,
        index: usize,
        _: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        let id = x25519_identity(bytes).ok_or(recipient::Error::Identity {
            index,
            message: "not a varstest identity".into(),
        })?;
        self.0.push(id.to_public());
        Ok(())
    }

    fn labels(&mut self) -> HashSet<String> {
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _: impl Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        let mut out = Vec::new();
        for key in &file_keys {
            log("wrap");
            let mut stanzas = Vec::new();
            for r in &self.0 {
                let (wrapped, _) = r
                    .wrap_file_key(key)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                stanzas.extend(wrapped.into_iter().map(|s| Stanza {
                    tag: TAG.into(),
                    args: s.args,
                    body: s.body,
                }));
            }
            out.push(stanzas);
        }
        Ok(Ok(out))
    }
}

struct Identities(Vec<age::x25519::Identity>);

impl IdentityPluginV1 for Identities {
    fn add_identity(&mut self, index: usize, _: &str, bytes: &[u8]) -> Result<(), identity::Error> {
        let id = x25519_identity(bytes).ok_or(identity::Error::Identity {
            index,
            message: "not a varstest identity".into(),
        })?;
        self.0.push(id);
        Ok(())
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        mut callbacks: impl Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        let mut out = HashMap::new();
        for (index, stanzas) in files.iter().enumerate() {
            let ours = stanzas.iter().filter(|s| s.tag == TAG).map(|s| Stanza {
                tag: "X25519".into(),
                args: s.args.clone(),
                body: s.body.clone(),
            });
            for stanza in ours {
                let key = self.0.iter().find_map(|id| id.unwrap_stanza(&stanza)?.ok());
                if let Some(key) = key {
                    let _ = callbacks.message("varstest: touch your key")?;
                    log("unwrap");
                    out.insert(index, Ok(key));
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(machine) = args
        .iter()
        .find_map(|a| a.strip_prefix("--age-plugin=").map(str::to_owned))
    {
        for (name, value) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VARS_PROMPT_") {
                log(&format!(
                    "env {}={}",
                    name.to_string_lossy(),
                    value.to_string_lossy()
                ));
            }
        }
        return run_state_machine(&machine, Handler);
    }
    if args.iter().any(|a| a == "--generate") {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let (_, secret) = bech32::decode(secret.expose_secret()).expect("age prints bech32");
        age_plugin::print_new_identity(NAME, &secret, &public_bytes(&identity));
        return Ok(());
    }
    Ok(())
}
