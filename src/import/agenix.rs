//! `vars import agenix RULES`: an agenix `secrets.nix` and the `.age` files it names.
//!
//! `secrets.nix` is evaluated with `nix-instantiate --eval --strict --json --readonly-mode`
//! (no flake, no store writes; a cleared environment with only `PATH` and an empty private
//! `HOME`; killed after a minute), which gives each file's `publicKeys` and `armor`. Each
//! `.age` file is read beneath the directory of `secrets.nix` without following links and
//! decrypted in memory with the admin's identities. `api/token.age` becomes generator
//! `api-token` with one file `token` (agenix's basename).
//!
//! agenix knows nothing of owners, modes or which host uses which secret beyond its recipients:
//! the readers come from `publicKeys`, the owner and mode are vars' defaults (agenix's defaults
//! are the same: root, root, 0400), and the plan says so.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    Builder, Candidate, CandidateFile, CandidateInstance, ImportError, ImportPlan, Readers,
    Severity, Source,
};
use crate::crypto::Identities;
use crate::fs_util::Dir;
use crate::model::Config;

/// How long `secrets.nix` may take to evaluate.
const EVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest `.age` file (and evaluation output) read.
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// One rule of `secrets.nix`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    public_keys: Vec<String>,
    armor: bool,
}

/// The expression that turns `secrets.nix` into plain data.
const EXPR: &str = r#"{ rules }: let r = import (/. + rules); in if !builtins.isAttrs r then throw "secrets.nix is not an attribute set" else builtins.mapAttrs (n: v: if builtins.isAttrs v then { publicKeys = v.publicKeys or []; armor = v.armor or false; } else throw "${n} in secrets.nix is not an attribute set ({ publicKeys = [ ... ]; })") r"#;

/// Evaluate `secrets.nix` (an absolute path).
fn evaluate(rules: &Path) -> Result<BTreeMap<String, Rule>, ImportError> {
    let home = tempfile::Builder::new()
        .prefix("vars-nix-")
        .tempdir()
        .map_err(|e| ImportError::Tool {
            program: "nix-instantiate".into(),
            reason: format!("cannot create a private HOME: {e}"),
        })?;
    let mut cmd = Command::new("nix-instantiate");
    cmd.env_clear()
        .env("HOME", home.path())
        .current_dir(home.path())
        .args([
            "--eval",
            "--strict",
            "--json",
            "--readonly-mode",
            "-E",
            EXPR,
            "--argstr",
            "rules",
        ])
        .arg(rules)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let mut child = cmd.spawn().map_err(|e| ImportError::Tool {
        program: "nix-instantiate".into(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "is not installed (install Nix, or Debian's nix-bin)".into()
        } else {
            e.to_string()
        },
    })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(MAX_FILE).read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| ImportError::Tool {
            program: "nix-instantiate".into(),
            reason: e.to_string(),
        })? {
            break status;
        }
        if start.elapsed() > EVAL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ImportError::Evaluate {
                file: rules.to_path_buf(),
                stderr: format!("it took longer than {}s", EVAL_TIMEOUT.as_secs()),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(4)
            .collect();
        return Err(ImportError::Evaluate {
            file: rules.to_path_buf(),
            stderr: crate::text::escape(&lines.join(" / ")).into_owned(),
        });
    }
    serde_json::from_slice(&out).map_err(|e| ImportError::Source {
        path: rules.to_path_buf(),
        reason: format!("it does not evaluate to {{ \"<file>.age\".publicKeys = [ … ]; … }}: {e}"),
    })
}

/// A path relative to the directory of `secrets.nix` that stays inside it.
fn inside(rel: &str) -> bool {
    let p = Path::new(rel);
    !rel.is_empty()
        && !rel.contains('\0')
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// Plan the import of the agenix rules file `rules`.
pub fn plan(config: &Config, rules: &Path, ids: &Identities) -> Result<ImportPlan, ImportError> {
    let rules: PathBuf = if rules.is_absolute() {
        rules.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| ImportError::Source {
                path: rules.to_path_buf(),
                reason: e.to_string(),
            })?
            .join(rules)
    };
    if !rules.is_file() {
        return Err(ImportError::Source {
            path: rules,
            reason: "is not a file (name agenix's secrets.nix)".into(),
        });
    }
    let entries = evaluate(&rules)?;
    let dir = Dir::open(rules.parent().unwrap_or(Path::new("/")))?;
    let mut b = Builder::new(config, Source::Agenix);
    for (name, rule) in entries {
        if !inside(&name) {
            b.finding(
                Severity::Unreadable,
                &name,
                "is not a path inside the directory of secrets.nix: not read",
            );
            continue;
        }
        let bytes = match dir.read_capped(&name, MAX_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                b.finding(
                    Severity::Unreadable,
                    &name,
                    "is named in secrets.nix but does not exist",
                );
                continue;
            }
            Err(e) => {
                b.finding(
                    Severity::Unreadable,
                    &name,
                    format!("cannot be read: {}", e.source),
                );
                continue;
            }
        };
        let plain = match ids.decrypt(&bytes) {
            Ok(p) => p,
            Err(_) => {
                b.finding(
                    Severity::Unreadable,
                    &name,
                    format!(
                        "none of your identities ({}) decrypts it",
                        ids.sources.join(", ")
                    ),
                );
                continue;
            }
        };
        if rule.armor {
            b.finding(
                Severity::Note,
                &name,
                "was ASCII-armored (armor = true); vars has one setting for the whole store (settings.armor)",
            );
        }
        let stem = name
            .strip_suffix(".age")
            .unwrap_or(&name)
            .trim_start_matches("./");
        let file = stem.rsplit('/').next().unwrap_or(stem).to_owned();
        b.add(Candidate {
            raw_name: stem.replace('/', "-"),
            origin: name.clone(),
            share: None,
            files: vec![CandidateFile {
                raw_name: file.clone(),
                secret: true,
                deploy: None,
                origin: name.clone(),
                reference: format!(
                    "config.age.secrets.<name>.path  (age.secrets.<name>.file = …/{name})"
                ),
            }],
            instances: vec![CandidateInstance {
                readers: Readers::Recipients(rule.public_keys),
                values: vec![(file, plain)],
                origin: name,
            }],
        });
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_rules_directory_are_read() {
        assert!(inside("api/token.age"));
        assert!(inside("./x.age"));
        for bad in ["../x.age", "/etc/shadow", "a/../../b.age", ""] {
            assert!(!inside(bad), "{bad}");
        }
    }
}
