//! `vars rekey`: print what is stale, by principal, then re-encrypt it after confirmation.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use vars::plan::Reader;
use vars::rekey::{Intent, VaultAction};

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A user who joined (declared in vars.yaml); re-keys what they should read
    #[arg(long = "add-user", value_name = "U")]
    pub add_users: Vec<String>,
    /// A machine that joined; re-keys the shared instances it uses
    #[arg(long = "add-machine", value_name = "M")]
    pub add_machines: Vec<String>,
    /// A user who left (already removed from vars.yaml); lists what they could read
    #[arg(long = "remove-user", value_name = "U")]
    pub remove_users: Vec<String>,
    /// Replace the vault key and re-encrypt every secret
    #[arg(long)]
    pub rotate_vault: bool,
    /// settings.backend was changed to this: convert every secret stored by the other one
    #[arg(long, value_name = "age|sops")]
    pub backend: Option<BackendArg>,
    /// Print the plan and exit (exit 3 if anything is stale)
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (required without a terminal)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Identity that unwraps the vault (repeatable)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Instances re-encrypted in parallel (default: number of cores)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackendArg {
    /// In-process age encryption (`<file>.age`).
    Age,
    /// The sops program (`<file>.sops`).
    Sops,
}

impl From<BackendArg> for vars::spec::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Age => vars::spec::Backend::Age,
            BackendArg::Sops => vars::spec::Backend::Sops,
        }
    }
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load_to_encrypt()?;
    let store = config.store();
    let _lock = ui::lock_store(&store, args.dry_run)?;
    let intent = Intent {
        add_users: args.add_users,
        add_machines: args.add_machines,
        remove_users: args.remove_users,
        rotate_vault: args.rotate_vault,
        backend: args.backend.map(Into::into),
    };
    let plan = vars::rekey::plan(&config, &store, &intent).map_err(rekey_error)?;
    print(&plan);
    if plan.is_empty() {
        ui::status(
            "Nothing to re-encrypt: every secret is encrypted to exactly its declared recipients.",
        );
        return Ok(());
    }
    if args.dry_run {
        return Err(CliError::findings(format!(
            "{} secret(s) to re-encrypt (dry run)",
            plan.secret_count()
        )));
    }
    if !args.yes {
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            return Err(CliError::usage(
                "rekey changes the store and there is no terminal to confirm on",
            )
            .hint("pass --yes to proceed, or --dry-run to only print the plan"));
        }
        let _ = write!(std::io::stderr(), "Proceed? [y/N] ");
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| CliError::new(format!("cannot read the answer: {e}")))?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(CliError::new("aborted; nothing changed"));
        }
    }
    let jobs = ui::jobs(args.jobs);
    let report =
        vars::rekey::apply(&config, &store, &plan, &args.identities, jobs).map_err(rekey_error)?;
    ui::status(format!(
        "Done: {} instance(s) re-encrypted{}.",
        report.instances,
        report
            .vault
            .map(|v| format!(", vault key {v}"))
            .unwrap_or_default()
    ));
    Ok(())
}

fn print(plan: &vars::rekey::RekeyPlan) {
    match &plan.vault {
        VaultAction::Keep => {}
        VaultAction::Rewrap { added } if added.is_empty() => {
            ui::status("  re-wrap keys/vault.age to the declared admins")
        }
        VaultAction::Rewrap { added } => ui::status(format!(
            "  re-wrap keys/vault.age (+ admin {})",
            added.join(", ")
        )),
        VaultAction::Rotate { reasons } => ui::status(format!(
            "  rotate the vault key ({}): every secret is re-encrypted",
            reasons.join("; ")
        )),
    }
    let rotating = matches!(plan.vault, VaultAction::Rotate { .. });
    if rotating {
        ui::status(format!(
            "  re-encrypt {} secret(s) in {} instance(s)",
            plan.secret_count(),
            plan.instances.len()
        ));
    }
    for (instance, secrets) in &plan.instances {
        for s in secrets {
            // Under a rotation every secret gains the new vault and loses the old one; show
            // only the changes that concern people and machines.
            let concerns =
                |r: &&Reader| !rotating || !matches!(r, Reader::Vault | Reader::Unknown(_));
            let added: Vec<Reader> = s.added.iter().filter(concerns).cloned().collect();
            let removed: Vec<Reader> = s.removed.iter().filter(concerns).cloned().collect();
            if rotating && added.is_empty() && removed.is_empty() && s.convert_from.is_none() {
                continue;
            }
            ui::status(format!(
                "  re-encrypt {instance}/{} ({})",
                s.file,
                ui::changes(&added, &removed, s.convert_from)
            ));
        }
    }
    for user in &plan.remove_users {
        ui::status(format!(
            "  remove users/{user}/ (the user is no longer declared)"
        ));
    }
    for (kind, name) in &plan.manifests {
        ui::status(format!("  rewrite {}/{name}/manifest.json", kind.dir()));
    }
    for note in &plan.notes {
        ui::status(format!("  note: {note}"));
    }
    if !plan.missing.is_empty() {
        ui::status(format!(
            "  note: {} instance(s) are not generated yet (vars generate creates them): {}",
            plan.missing.len(),
            plan.missing
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (user, secrets) in &plan.readable_by_removed {
        if secrets.is_empty() {
            ui::status(format!("  {user} could read no secret of this store"));
            continue;
        }
        ui::status(format!(
            "  {user} could read these; regenerate them (vars generate --regenerate GEN --machine M / --user U):"
        ));
        for s in secrets {
            ui::status(format!("    {s}"));
        }
    }
}

pub(super) fn rekey_error(e: vars::rekey::RekeyError) -> CliError {
    use vars::rekey::RekeyError as R;
    match e {
        R::Intent { message } => CliError::new(message),
        R::Plan(p) => p.into(),
        R::Vault(v) => v.into(),
        R::Open(o) => o.into(),
        R::Seal {
            source: vars::seal::SealError::Sops(s),
            ..
        } => super::error::sops_error(*s),
        e @ R::Seal { .. } => CliError::new(e.to_string()),
        R::Store(s) => s.into(),
    }
}
