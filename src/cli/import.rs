//! `vars import agenix RULES | clan DIR | sops-nix FILE…`: print the plan (generators, who
//! reads what, what is lost or skipped, the vars.yaml changes), then write it unless
//! `--dry-run`; the table from old Nix references to new ones goes to stdout.

use std::path::PathBuf;

use vars::import::{ImportError, ImportPlan, Severity};

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub source: SourceArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum SourceArgs {
    /// Import agenix secrets: the secrets.nix rules file and the .age files it names
    Agenix {
        /// agenix's secrets.nix
        rules: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Import the vars of a clan repository (sops backend: vars/per-machine, vars/shared)
    Clan {
        /// The clan repository (the directory holding vars/ and sops/)
        #[arg(value_name = "DIR")]
        repo: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Import sops YAML/JSON/binary files as sops-nix uses them (one generator per file)
    SopsNix {
        /// The sops files
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The generator's name (one file only; default: the file's name)
        #[arg(long, value_name = "NAME")]
        generator: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Identity that decrypts the source (age identity file or ssh private key; repeatable;
    /// default: vars' identity, then sops' ~/.config/sops/age/keys.txt)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Print the plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Import although some recipients, machines or users lose access (listed in the plan)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Leave out what cannot be decrypted or read (listed in the plan)
    #[arg(long)]
    pub skip_undecryptable: bool,
    /// Accept this vault recipient although keys/vault.pub changed since this machine last
    /// used the store
    #[arg(long, value_name = "AGE1…")]
    pub trust_vault: Option<String>,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load_to_encrypt()?;
    let cwd = global.cwd()?;
    let config_file = match &global.config {
        Some(f) => cwd.join(f),
        None => vars::model::find_config(&cwd)?,
    };
    let (common, plan) = match &args.source {
        SourceArgs::Agenix { rules, common } => {
            let ids = vars::import::identities(&common.identities).map_err(import_error)?;
            (common, vars::import::agenix::plan(&config, rules, &ids))
        }
        SourceArgs::Clan { repo, common } => {
            let ids = vars::import::identities(&common.identities).map_err(import_error)?;
            (common, vars::import::clan::plan(&config, repo, &ids))
        }
        SourceArgs::SopsNix {
            files,
            generator,
            common,
        } => {
            let ids = vars::import::identities(&common.identities).map_err(import_error)?;
            let plan = vars::import::sops_nix::plan(&config, files, generator.as_deref(), &ids);
            (common, plan)
        }
    };
    let plan = plan.map_err(import_error)?;
    print(&plan);
    if common.dry_run {
        references(&plan)?;
        ui::status("Dry run: nothing changed.");
        return Ok(());
    }
    let table: Vec<(String, String)> = plan.references.clone();
    let prepared = vars::import::prepare(
        &config,
        &config_file,
        plan,
        &vars::import::Options {
            accept_losses: common.yes,
            skip_unreadable: common.skip_undecryptable,
            trust_vault: common.trust_vault.clone(),
        },
    )
    .map_err(import_error)?;
    let store = config.store();
    let _lock = ui::lock_store(&store, false)?;
    let report = vars::import::commit(&config, prepared).map_err(import_error)?;
    if report.created_vault {
        ui::status("created the vault key");
    }
    for f in &report.generator_files {
        ui::status(format!("wrote {}", f.display()));
    }
    ui::status(format!(
        "Done: {} instance(s) stored, {} manifest(s) written; vars.yaml updated. Review with git diff, then run vars check.",
        report.instances.len(),
        report.manifests
    ));
    print_table(&table)
}

fn print(plan: &ImportPlan) {
    ui::status(format!("Import from {}:", plan.source.as_str()));
    for g in &plan.generators {
        for inst in &g.instances {
            let readers = if g.files.iter().all(|f| !f.deploy) {
                "admins only (deploy: false, through the vault)".to_owned()
            } else {
                format!("{} and admins (through the vault)", inst.readers.join(", "))
            };
            ui::status(format!(
                "  {} from {}: read by {readers}",
                inst.id,
                vars::text::escape(&g.origin)
            ));
        }
        for f in &g.files {
            ui::status(format!(
                "    {} ({}{}) from {}",
                f.name,
                if f.secret { "secret" } else { "public" },
                if f.deploy { "" } else { ", deploy: false" },
                vars::text::escape(&f.origin)
            ));
        }
    }
    for e in &plan.edits {
        ui::status(format!(
            "  vars.yaml: {}.{}.generators += {}",
            e.kind.dir(),
            e.principal,
            e.generator
        ));
    }
    let section = |severity: Severity, title: &str| {
        let items: Vec<_> = plan.findings_of(severity).collect();
        if items.is_empty() {
            return;
        }
        ui::status(title);
        for f in items {
            ui::status(format!("  {}: {}", f.subject, f.message));
        }
    };
    section(
        Severity::Loss,
        "Access that cannot be carried over (import with --yes to accept):",
    );
    section(
        Severity::Unreadable,
        "Not readable (import with --skip-undecryptable to leave them out):",
    );
    section(Severity::Note, "Notes:");
    if !plan.suggestions.is_empty() {
        ui::status("Declare these in vars.yaml to keep their access, then import again:");
        for s in &plan.suggestions {
            ui::status(format!("  {s}"));
        }
    }
}

fn references(plan: &ImportPlan) -> Result<(), CliError> {
    print_table(&plan.references)
}

/// The old Nix references and their vars replacements, as two aligned columns on stdout.
fn print_table(table: &[(String, String)]) -> Result<(), CliError> {
    let width = table
        .iter()
        .map(|(o, _)| o.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    if !table.is_empty() {
        out.push_str(&format!(
            "{:width$}  {}\n",
            "# in your Nix configuration", "# becomes"
        ));
    }
    for (old, new) in table {
        out.push_str(&format!("{:width$}  {new}\n", vars::text::escape(old)));
    }
    ui::data(out.as_bytes())
}

fn import_error(e: ImportError) -> CliError {
    let err = CliError::new(e.to_string());
    match e {
        ImportError::Blocked { flag, .. } => err
            .hint(format!("nothing was changed; declare what is missing in vars.yaml and import again, or pass {flag} to import without it")),
        ImportError::Exists { .. } => err.hint("rename or remove the existing generator (sops-nix: or choose another name with --generator NAME); nothing was changed"),
        ImportError::Collision { .. } => err.hint("rename one of them in the source; nothing was changed"),
        ImportError::Evaluate { .. } => err.hint("check it with: nix-instantiate --eval --strict secrets.nix; nothing was changed"),
        ImportError::Tool { .. } => err.hint("install Nix (Debian: apt-get install nix-bin); nothing was changed"),
        ImportError::Identity(i) => i.into(),
        ImportError::Config(c) => c.into(),
        ImportError::Store(s) => s.into(),
        ImportError::Set(s) => super::set::set_error(s),
        ImportError::Nothing { .. } => err.hint("nothing was changed"),
        _ => err.hint("nothing was changed"),
    }
}
