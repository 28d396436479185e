//! Values for generator prompts (DESIGN §2, §5, §9.9). Where a value comes from, in order:
//!
//! 1. the command line: `--prompt GEN.NAME=VALUE` (visible in `/proc/PID/cmdline` to every
//!    user of the machine: for tests and throwaway values), `--prompt-file GEN.NAME=PATH`
//!    (`PATH` `-` reads standard input), or an environment variable `VARS_PROMPT_<KEY>` (the
//!    key as written, or upper-cased with every other character turned into `_`:
//!    `VARS_PROMPT_USER_PASSWORD_PASSWORD`). `GEN` may be an instance path
//!    (`users/crs58/user-password.password`), which wins over the generator name;
//! 2. the value stored by an earlier run, for a `persist: true` prompt of an instance that is
//!    regenerated (issue 10: stored values are reused, only the missing ones are asked);
//! 3. the person, through an [`Asker`] the CLI supplies (the library never reads the terminal);
//!    without one, an error lists every missing value.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use crate::fs_util;
use crate::model::{Config, InstanceId};
use crate::secret::SecretBytes;
use crate::spec::PromptKind;

/// The prefix of environment variables holding prompt values.
pub const ENV_PREFIX: &str = "VARS_PROMPT_";

/// Errors collecting prompt values. None carries a value.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// `--prompt`/`--prompt-file`/`VARS_PROMPT_…` is malformed or names no known prompt.
    #[error("{what}: {reason}")]
    BadArgument {
        /// Which argument, never its value (`--prompt #2`, `--prompt g.pw`).
        what: String,
        /// Why.
        reason: String,
    },
    /// Values are missing and there is no terminal to ask on.
    #[error("these prompts need a value and there is no terminal to ask on: {}", missing.join(", "))]
    Missing {
        /// `instance.prompt` for each.
        missing: Vec<String>,
    },
    /// Reading a `--prompt-file`, standard input or the terminal failed.
    #[error(transparent)]
    Io(#[from] fs_util::IoError),
}

/// One question for the person.
pub struct Question<'a> {
    /// `instance.prompt`, e.g. `users/alice/user-password.password`.
    pub key: &'a str,
    /// The prompt's description with control characters escaped (it comes from the repo).
    pub description: Option<String>,
    /// How the value is entered.
    pub kind: PromptKind,
}

/// Asks the person for values: supplied by the CLI (a terminal), absent in batch runs.
pub trait Asker: Sync {
    /// The value for `question`, or `None` when there is no one to ask.
    fn ask(&self, question: &Question<'_>) -> Result<Option<SecretBytes>, PromptError>;
}

/// Given values, keyed by `GEN.NAME` or `INSTANCE.NAME`.
#[derive(Default)]
pub struct PromptValues {
    given: BTreeMap<String, SecretBytes>,
    /// `VARS_PROMPT_…` values, matched to prompts by [`PromptValues::validate`].
    env: Vec<(String, SecretBytes)>,
}

impl PromptValues {
    /// Parse `--prompt KEY=VALUE` and `--prompt-file KEY=PATH` arguments and the
    /// `VARS_PROMPT_…` variables of `environment`. `stdin` reads standard input, for at most
    /// one `--prompt-file KEY=-`.
    pub fn parse(
        values: &[String],
        files: &[String],
        environment: impl IntoIterator<Item = (String, SecretBytes)>,
        stdin: &mut dyn FnMut() -> std::io::Result<SecretBytes>,
    ) -> Result<Self, PromptError> {
        let mut given = BTreeMap::new();
        for (i, arg) in values.iter().enumerate() {
            // A malformed argument is named by its position: its text may be the value.
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| PromptError::BadArgument {
                    what: format!("--prompt #{}", i + 1),
                    reason: "expected GEN.NAME=VALUE".into(),
                })?;
            given.insert(k.to_owned(), SecretBytes::new(v.as_bytes().to_vec()));
        }
        let mut stdin_used = false;
        for arg in files {
            let (k, p) = arg
                .split_once('=')
                .ok_or_else(|| PromptError::BadArgument {
                    what: format!("--prompt-file {arg:?}"),
                    reason: "expected GEN.NAME=PATH (PATH - reads standard input)".into(),
                })?;
            let value = if p == "-" {
                if std::mem::replace(&mut stdin_used, true) {
                    return Err(PromptError::BadArgument {
                        what: format!("--prompt-file {k}=-"),
                        reason: "standard input can hold only one value".into(),
                    });
                }
                stdin().map_err(|source| fs_util::IoError {
                    action: "read",
                    path: PathBuf::from("<standard input>"),
                    source,
                })?
            } else {
                read_secret_file(&PathBuf::from(p))?
            };
            given.insert(k.to_owned(), value);
        }
        let mut env_values = Vec::new();
        for (name, value) in environment {
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                env_values.push((key.to_owned(), value));
            }
        }
        Ok(PromptValues {
            given,
            env: env_values,
        })
    }

    /// Check every given key names a prompt, and resolve the `VARS_PROMPT_…` variables
    /// against the prompts `config` declares.
    pub fn validate(&mut self, config: &Config) -> Result<(), PromptError> {
        let mut keys: Vec<String> = Vec::new();
        for g in config.generators.values() {
            keys.extend(g.prompts.keys().map(|p| format!("{}.{p}", g.name)));
        }
        for id in config.instances.keys() {
            keys.extend(
                config
                    .generator(id)
                    .prompts
                    .keys()
                    .map(|p| format!("{id}.{p}")),
            );
        }
        for key in self.given.keys() {
            if !keys.contains(key) {
                return Err(PromptError::BadArgument {
                    what: format!("--prompt {}", crate::text::escape(key)),
                    reason: "no generator has this prompt (write GEN.NAME or machines/M/GEN.NAME)"
                        .into(),
                });
            }
        }
        for (name, value) in std::mem::take(&mut self.env) {
            let matching: Vec<&String> = keys
                .iter()
                .filter(|k| **k == name || env_name(k) == name)
                .collect();
            let what = || format!("{ENV_PREFIX}{}", crate::text::escape(&name));
            match matching.as_slice() {
                [] => {
                    return Err(PromptError::BadArgument {
                        what: what(),
                        reason: "no generator has this prompt".into(),
                    });
                }
                [one] => {
                    // The command line wins over the environment.
                    self.given.entry((*one).clone()).or_insert(value);
                }
                several => {
                    return Err(PromptError::BadArgument {
                        what: what(),
                        reason: format!(
                            "it could mean {}; write the key as it is (e.g. {ENV_PREFIX}{})",
                            several
                                .iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(" or "),
                            several[0]
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// The value given for prompt `name` of instance `id` (instance key first).
    pub fn given(&self, config: &Config, id: &InstanceId, name: &str) -> Option<&SecretBytes> {
        self.given.get(&format!("{id}.{name}")).or_else(|| {
            self.given
                .get(&format!("{}.{name}", config.generator(id).name))
        })
    }
}

/// A prompt key as an environment variable name: upper case, other characters `_`.
fn env_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Where one prompt's value will come from, as the plan says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The command line or environment.
    Given,
    /// The value an earlier run stored (decrypted with the vault).
    Stored,
    /// Asked now.
    Ask,
}

/// Every prompt of `instances` and where its value comes from. `stored(id, prompt)` says
/// whether a value is stored for a persisted prompt of an instance being regenerated.
pub fn sources(
    config: &Config,
    given: &PromptValues,
    instances: &[InstanceId],
    stored: impl Fn(&InstanceId, &str) -> bool,
) -> Vec<(InstanceId, String, Source)> {
    let mut out = Vec::new();
    for id in instances {
        for (name, def) in &config.generator(id).prompts {
            let source = if given.given(config, id, name).is_some() {
                Source::Given
            } else if def.persist && stored(id, name) {
                Source::Stored
            } else {
                Source::Ask
            };
            out.push((id.clone(), name.clone(), source));
        }
    }
    out
}

/// The values of every prompt in `plan` (from [`sources`]): given ones, stored ones read with
/// `read_stored`, and the rest asked through `asker`. Missing values (no asker, or it declined)
/// are reported together, before anything runs.
pub fn collect(
    config: &Config,
    given: &PromptValues,
    plan: &[(InstanceId, String, Source)],
    asker: Option<&dyn Asker>,
    read_stored: &mut dyn FnMut(&InstanceId, &str) -> Result<SecretBytes, PromptError>,
) -> Result<BTreeMap<InstanceId, Vec<(String, SecretBytes)>>, PromptError> {
    let mut out: BTreeMap<InstanceId, Vec<(String, SecretBytes)>> = BTreeMap::new();
    let mut missing = Vec::new();
    for (id, name, source) in plan {
        let def = &config.generator(id).prompts[name];
        let value = match source {
            Source::Given => given.given(config, id, name).map(SecretBytes::duplicate),
            Source::Stored => Some(read_stored(id, name)?),
            Source::Ask => {
                let key = format!("{id}.{name}");
                let question = Question {
                    key: &key,
                    description: def
                        .description
                        .as_deref()
                        .map(|d| crate::text::escape(d).into_owned()),
                    kind: def.kind,
                };
                match asker {
                    Some(a) => a.ask(&question)?,
                    None => None,
                }
            }
        };
        match value {
            Some(v) => out.entry(id.clone()).or_default().push((name.clone(), v)),
            None => missing.push(format!("{id}.{name}")),
        }
    }
    if !missing.is_empty() {
        return Err(PromptError::Missing { missing });
    }
    Ok(out)
}

/// Read a whole stream into zeroizing memory. The buffer never grows in place: each growth
/// copies into a new [`SecretBytes`] and the old one is wiped, so no unzeroed copy of the
/// value is left in freed memory (a growing `Vec` would leave one per reallocation).
pub fn read_secret(mut r: impl Read) -> std::io::Result<SecretBytes> {
    let mut buf = SecretBytes::new(Vec::with_capacity(4096));
    let mut chunk = zeroize::Zeroizing::new([0u8; 4096]);
    loop {
        let n = match r.read(&mut chunk[..]) {
            Ok(0) => return Ok(buf),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.len() + n > buf.capacity() {
            let mut bigger = Vec::with_capacity((buf.capacity() * 2).max(buf.len() + n));
            bigger.extend_from_slice(buf.expose());
            buf = SecretBytes::new(bigger);
        }
        buf.extend_within_capacity(&chunk[..n]);
    }
}

fn read_secret_file(path: &std::path::Path) -> Result<SecretBytes, fs_util::IoError> {
    use fs_util::IoContext as _;
    let f = std::fs::File::open(path).at("read", path)?;
    read_secret(f).at("read", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_secret_reads_everything() {
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let s = read_secret(&data[..]).unwrap();
        assert_eq!(s.expose(), &data[..]);
    }

    #[test]
    fn malformed_prompt_arguments_never_echo_the_value() {
        let err = PromptValues::parse(&["hunter2-secret".into()], &[], [], &mut || unreachable!())
            .err()
            .unwrap();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("--prompt #1"), "{err}");
    }

    #[test]
    fn standard_input_holds_one_value() {
        let mut reads = 0;
        let mut stdin = || {
            reads += 1;
            Ok(SecretBytes::new(b"from stdin".to_vec()))
        };
        let v = PromptValues::parse(&[], &["g.a=-".into()], [], &mut stdin).unwrap();
        assert_eq!(v.given["g.a"].expose(), b"from stdin");
        let err = PromptValues::parse(&[], &["g.a=-".into(), "g.b=-".into()], [], &mut stdin)
            .err()
            .unwrap();
        assert!(err.to_string().contains("only one"), "{err}");
    }

    #[test]
    fn environment_names_are_normalised() {
        assert_eq!(env_name("user-password.password"), "USER_PASSWORD_PASSWORD");
        assert_eq!(
            env_name("users/alice/user-password.password"),
            "USERS_ALICE_USER_PASSWORD_PASSWORD"
        );
    }
}
