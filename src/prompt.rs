//! Values for generator prompts: from `--prompt GEN.NAME=VALUE` / `--prompt-file GEN.NAME=PATH`
//! (GEN may also be an instance path such as `users/crs58/user-password`), else asked on the
//! terminal (hidden input for hidden types), else an error listing every missing prompt.

use std::collections::BTreeMap;
use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;

use crate::fs_util;
use crate::model::{Config, InstanceId};
use crate::secret::SecretBytes;
use crate::spec::PromptKind;

/// Errors collecting prompt values.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// `--prompt` is not `KEY=VALUE` or names no known prompt.
    #[error("--prompt {arg:?}: {reason}")]
    BadArgument {
        /// The argument, value cut off.
        arg: String,
        /// Why.
        reason: String,
    },
    /// Values are missing and there is no terminal to ask on.
    #[error("these prompts need a value and there is no terminal to ask on: {}", missing.join(", "))]
    Missing {
        /// `instance.prompt` for each.
        missing: Vec<String>,
    },
    /// Reading a `--prompt-file` or the terminal failed.
    #[error(transparent)]
    Io(#[from] fs_util::IoError),
}

/// Given values, keyed by `GEN.NAME` or `INSTANCE.NAME`.
#[derive(Default)]
pub struct PromptValues {
    given: BTreeMap<String, SecretBytes>,
}

impl PromptValues {
    /// Parse `--prompt KEY=VALUE` and `--prompt-file KEY=PATH` arguments.
    pub fn from_args(values: &[String], files: &[String]) -> Result<Self, PromptError> {
        let mut given = BTreeMap::new();
        for arg in values {
            let (k, v) = arg
                .split_once('=')
                .ok_or_else(|| PromptError::BadArgument {
                    arg: arg.chars().take_while(|c| *c != '=').collect(),
                    reason: "expected GEN.NAME=VALUE".into(),
                })?;
            given.insert(k.to_owned(), SecretBytes::new(v.as_bytes().to_vec()));
        }
        for arg in files {
            let (k, p) = arg
                .split_once('=')
                .ok_or_else(|| PromptError::BadArgument {
                    arg: arg.clone(),
                    reason: "expected GEN.NAME=PATH".into(),
                })?;
            given.insert(
                k.to_owned(),
                SecretBytes::new(fs_util::read(&PathBuf::from(p))?),
            );
        }
        Ok(PromptValues { given })
    }

    /// Check every given key names a prompt of some generator.
    pub fn validate(&self, config: &Config) -> Result<(), PromptError> {
        for key in self.given.keys() {
            let known = config
                .generators
                .values()
                .any(|g| g.prompts.keys().any(|p| key == &format!("{}.{p}", g.name)))
                || config.instances.keys().any(|id| {
                    config
                        .generator(id)
                        .prompts
                        .keys()
                        .any(|p| key == &format!("{id}.{p}"))
                });
            if !known {
                return Err(PromptError::BadArgument {
                    arg: key.clone(),
                    reason: "no generator has this prompt (write GEN.NAME or machines/M/GEN.NAME)"
                        .into(),
                });
            }
        }
        Ok(())
    }

    /// The values for `instances`, asking on the terminal for what was not given.
    pub fn collect(
        &self,
        config: &Config,
        instances: &[InstanceId],
    ) -> Result<BTreeMap<InstanceId, Vec<(String, SecretBytes)>>, PromptError> {
        let mut out: BTreeMap<InstanceId, Vec<(String, SecretBytes)>> = BTreeMap::new();
        let mut missing = Vec::new();
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        for id in instances {
            let generator = config.generator(id);
            for (name, def) in &generator.prompts {
                let specific = format!("{id}.{name}");
                let general = format!("{}.{name}", generator.name);
                let value = self
                    .given
                    .get(&specific)
                    .or_else(|| self.given.get(&general))
                    .map(SecretBytes::duplicate);
                let value = match value {
                    Some(v) => v,
                    None if interactive => ask(&specific, def.description.as_deref(), def.kind)?,
                    None => {
                        missing.push(specific);
                        continue;
                    }
                };
                out.entry(id.clone())
                    .or_default()
                    .push((name.clone(), value));
            }
        }
        if !missing.is_empty() {
            return Err(PromptError::Missing { missing });
        }
        Ok(out)
    }
}

fn ask(key: &str, description: Option<&str>, kind: PromptKind) -> Result<SecretBytes, PromptError> {
    let label = match description {
        Some(d) => format!("{key} ({d})"),
        None => key.to_owned(),
    };
    let io_err = |e| fs_util::IoError {
        action: "read",
        path: PathBuf::from("<terminal>"),
        source: e,
    };
    match kind {
        PromptKind::Hidden => Ok(SecretBytes::new(
            rpassword::prompt_password(format!("{label}: "))
                .map_err(io_err)?
                .into_bytes(),
        )),
        PromptKind::Line => {
            let _ = write!(std::io::stderr(), "{label}: ");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(io_err)?;
            let trimmed = line.trim_end_matches(['\n', '\r']).as_bytes().to_vec();
            zeroize::Zeroize::zeroize(&mut line);
            Ok(SecretBytes::new(trimmed))
        }
        PromptKind::Multiline | PromptKind::MultilineHidden => {
            let hidden = if kind == PromptKind::MultilineHidden {
                ", input is not hidden on all terminals"
            } else {
                ""
            };
            let _ = writeln!(std::io::stderr(), "{label} (end with Ctrl-D{hidden}):");
            let mut buf = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut buf)
                .map_err(io_err)?;
            Ok(SecretBytes::new(buf))
        }
    }
}
