//! Restarting and reloading the units of added and changed files (`NIX.md` §2 step 13), the
//! only processes `vars install` starts on Linux.
//!
//! - `systemctl`: `systemctl --no-block try-restart UNIT…` and `try-reload-or-restart UNIT…`
//!   (`--user` in user mode). `--no-block`, because during a NixOS switch the install runs
//!   before `sysinit-reactivation.target` and waiting for a service ordered after
//!   `sysinit.target` would deadlock (sops-nix PR #936); `try-`, because a unit that is not
//!   running starts with the new secrets anyway. The program is found once, by absolute path,
//!   on `PATH` or in the usual places, and runs with a cleared environment (user mode keeps
//!   only `XDG_RUNTIME_DIR` and `DBUS_SESSION_BUS_ADDRESS`, without which `systemctl --user`
//!   cannot reach the user's manager). Unit names were checked by the manifest: none can be
//!   read as an option.
//! - `activation-list`: unit names appended to NixOS's `/run/nixos/activation-restart-list`
//!   and `activation-reload-list`, which `switch-to-configuration` reads after activation (the
//!   `dry-` ones in a dry activation). Nothing when that directory does not exist.
//! - `none`: nothing; the units are only reported.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::Problem;

/// How units of changed files are restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartVia {
    /// `systemctl --no-block try-restart …` now.
    Systemctl,
    /// Append to NixOS's activation lists for `switch-to-configuration`.
    ActivationList,
    /// Report only.
    None,
}

/// The units to restart and to reload, sorted and without duplicates.
pub(super) struct Units<'a> {
    pub restart: &'a [String],
    pub reload: &'a [String],
}

/// Restart, reload or list `units`. Returns warnings; a failure is a problem (the new
/// generation is live by then).
pub(super) fn apply(
    via: RestartVia,
    units: &Units<'_>,
    dry_run: bool,
    user_mode: bool,
    activation_dir: &Path,
) -> Result<Vec<String>, Vec<Problem>> {
    if units.restart.is_empty() && units.reload.is_empty() {
        return Ok(Vec::new());
    }
    match via {
        RestartVia::None => Ok(Vec::new()),
        // A dry run only reports what it would restart.
        RestartVia::Systemctl if dry_run => Ok(Vec::new()),
        RestartVia::Systemctl => {
            let mut problems = Vec::new();
            for (verb, list) in [
                ("try-restart", units.restart),
                ("try-reload-or-restart", units.reload),
            ] {
                if !list.is_empty()
                    && let Err(p) = systemctl(verb, list, user_mode)
                {
                    problems.push(p);
                }
            }
            if problems.is_empty() {
                Ok(Vec::new())
            } else {
                Err(problems)
            }
        }
        RestartVia::ActivationList => activation_lists(units, dry_run, activation_dir),
    }
}

fn systemctl(verb: &str, units: &[String], user_mode: bool) -> Result<(), Problem> {
    let subject = format!("systemctl {verb}");
    let program = systemctl_path().ok_or_else(|| {
        Problem::new(
            &subject,
            format!(
                "systemctl is not installed; restart {} yourself",
                units.join(" ")
            ),
        )
    })?;
    let mut cmd = Command::new(program);
    cmd.env_clear();
    if user_mode {
        cmd.arg("--user");
        for var in [
            crate::env::XDG_RUNTIME_DIR,
            crate::env::DBUS_SESSION_BUS_ADDRESS,
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
    }
    cmd.args(["--no-block", verb])
        .args(units)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| Problem::new(&subject, format!("cannot run {}: {e}", program.display())))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr: String = stderr.trim().chars().take(2000).collect();
    Err(Problem::new(
        format!("{subject} {}", units.join(" ")),
        format!("{} ({}): {stderr}", program.display(), out.status),
    ))
}

/// systemctl's absolute path, looked for once: on `PATH` (absolute entries only), then where
/// NixOS and the distributions put it.
fn systemctl_path() -> Option<&'static Path> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        let fixed = [
            "/run/current-system/sw/bin",
            "/usr/bin",
            "/bin",
            "/usr/local/bin",
        ]
        .map(PathBuf::from);
        on_path
            .into_iter()
            .filter(|d| d.is_absolute())
            .chain(fixed)
            .map(|d| d.join("systemctl"))
            .find(|p| is_executable(p))
    })
    .as_deref()
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Append to `[dry-]activation-{restart,reload}-list` in `dir`.
fn activation_lists(
    units: &Units<'_>,
    dry_run: bool,
    dir: &Path,
) -> Result<Vec<String>, Vec<Problem>> {
    if !dir.is_dir() {
        return Ok(vec![format!(
            "{} does not exist (not a NixOS activation?): units to restart were not listed",
            dir.display()
        )]);
    }
    let prefix = if dry_run {
        "dry-activation"
    } else {
        "activation"
    };
    let mut problems = Vec::new();
    for (kind, list) in [("restart", units.restart), ("reload", units.reload)] {
        if list.is_empty() {
            continue;
        }
        let path = dir.join(format!("{prefix}-{kind}-list"));
        if let Err(e) = append_lines(&path, list) {
            problems.push(Problem::new(path.display().to_string(), e.to_string()));
        }
    }
    if problems.is_empty() {
        Ok(Vec::new())
    } else {
        Err(problems)
    }
}

fn append_lines(path: &Path, lines: &[String]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_lists_are_appended_and_dry_runs_use_their_own() {
        let t = tempfile::tempdir().unwrap();
        let restart = vec!["a.service".to_owned(), "b.service".to_owned()];
        let reload = vec!["c.service".to_owned()];
        let units = Units {
            restart: &restart,
            reload: &reload,
        };
        let via = RestartVia::ActivationList;
        assert!(
            apply(via, &units, false, false, t.path())
                .unwrap()
                .is_empty()
        );
        assert!(
            apply(via, &units, false, false, t.path())
                .unwrap()
                .is_empty()
        );
        assert!(
            apply(via, &units, true, false, t.path())
                .unwrap()
                .is_empty()
        );
        let read = |n: &str| std::fs::read_to_string(t.path().join(n)).unwrap();
        assert_eq!(
            read("activation-restart-list"),
            "a.service\nb.service\na.service\nb.service\n"
        );
        assert_eq!(read("activation-reload-list"), "c.service\nc.service\n");
        assert_eq!(
            read("dry-activation-restart-list"),
            "a.service\nb.service\n"
        );
        assert_eq!(read("dry-activation-reload-list"), "c.service\n");

        let missing = t.path().join("no-nixos");
        let warnings = apply(via, &units, false, false, &missing).unwrap();
        assert!(warnings[0].contains("does not exist"), "{warnings:?}");
        assert!(!missing.exists());

        let nothing = Units {
            restart: &[],
            reload: &[],
        };
        let other = tempfile::tempdir().unwrap();
        apply(via, &nothing, false, false, other.path()).unwrap();
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_planted_link_is_not_appended_through() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("activation-restart-list")).unwrap();
        let restart = vec!["a.service".to_owned()];
        let units = Units {
            restart: &restart,
            reload: &[],
        };
        let err = apply(RestartVia::ActivationList, &units, false, false, t.path()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    }
}
