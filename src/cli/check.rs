//! `vars check`: CI's question "is the store complete and current?" Exit 3 on findings.

use vars::check::Severity;

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only what this machine receives
    #[arg(long, value_name = "M")]
    pub machine: Option<String>,
    /// Print findings as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    if let Some(m) = &args.machine
        && !config.machines.contains_key(m)
    {
        return Err(CliError::new(format!("unknown machine {m:?}")));
    }
    let store = config.store();
    let findings = vars::check::check(&config, &store, args.machine.as_deref())?;
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    if args.json {
        let mut out = serde_json::to_vec_pretty(
            &serde_json::json!({ "ok": errors == 0, "findings": findings }),
        )
        .expect("findings serialize");
        out.push(b'\n');
        ui::data(&out)?;
    } else {
        for f in &findings {
            let label = if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            ui::status(format!("{label}: {}: {}", f.subject, f.message));
        }
    }
    if errors > 0 {
        return Err(CliError::findings(format!("{errors} problem(s) found"))
            .hint("run vars generate to fix missing and stale vars"));
    }
    if !args.json {
        ui::status(format!(
            "ok: {} instance(s) current",
            config.instances.len()
        ));
    }
    Ok(())
}
