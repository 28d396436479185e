//! Terminal output helpers: status lines to stderr, data to stdout (quiet on broken pipe).

use std::io::Write as _;

/// A status line on stderr.
pub fn status(line: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "{}", line.as_ref());
}

/// Data on stdout. A closed pipe (`vars get … | head -c1`) is not an error.
pub fn data(bytes: &[u8]) -> Result<(), super::CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(super::CliError::new(format!("cannot write to stdout: {e}"))),
    }
}

/// A progress bar on stderr when it is a terminal (and `NO_COLOR` unset keeps colour off
/// anyway: the template has none); `None` otherwise, so logs and CI stay clean.
pub fn progress(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if len < 2 || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what} [{{bar:30}}] {{pos}}/{{len}} {{msg}}"
    ))
    .expect("the template is valid")
    .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

/// Take the store's write lock and repair what an interrupted run left (not for a dry run,
/// which changes nothing and needs no lock).
pub fn lock_store(
    store: &vars::store::Store,
    dry_run: bool,
) -> Result<Option<vars::store::StoreLock>, super::CliError> {
    if dry_run {
        return Ok(None);
    }
    let lock = store.lock()?;
    for repaired in store.recover()? {
        status(format!(
            "repaired {} (an earlier run was interrupted)",
            repaired.display()
        ));
    }
    Ok(Some(lock))
}

/// Print a plan for people.
pub fn print_plan(plan: &vars::plan::Plan) {
    use vars::plan::Action;
    if plan.create_vault {
        status("  create vault key (keys/vault.pub, keys/vault.age)");
    }
    for p in &plan.instances {
        match &p.action {
            Action::UpToDate => {}
            Action::Generate { reasons } => {
                let why: Vec<String> = reasons.iter().map(ToString::to_string).collect();
                status(format!("  generate {} ({})", p.instance, why.join(", ")));
            }
            Action::Rekey { secrets } => {
                for s in secrets {
                    let mut parts = Vec::new();
                    if !s.added.is_empty() {
                        parts.push(format!("+ {}", s.added.join(", ")));
                    }
                    if !s.removed.is_empty() {
                        parts.push(format!("- {}", s.removed.join(", ")));
                    }
                    status(format!(
                        "  re-encrypt {}/{} ({})",
                        p.instance,
                        s.file,
                        parts.join("; ")
                    ));
                }
            }
        }
        if p.definition_changed {
            status(format!(
                "  warning: {}: definition changed since generation; not regenerated (use --regenerate)",
                p.instance
            ));
        }
    }
}
