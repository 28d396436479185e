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
