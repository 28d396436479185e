//! `vars generate`: build the request, let the library plan it, print the plan, apply it.

use std::path::PathBuf;

use vars::generate::{Request, Selection};

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Generate what this machine needs (repeatable)
    #[arg(long = "machine", value_name = "M")]
    pub machines: Vec<String>,
    /// Generate this user's vars (repeatable)
    #[arg(long = "user", value_name = "U")]
    pub users: Vec<String>,
    /// Generate everything (the default when nothing is selected)
    #[arg(long)]
    pub all: bool,
    /// Only these generators or instances (GEN, machines/M/GEN, users/U/GEN, shared/GEN)
    #[arg(value_name = "GEN")]
    pub generators: Vec<String>,
    /// Regenerate the selected instances even if they are current (with --machine or --user:
    /// their own instances; a shared instance only when named)
    #[arg(long)]
    pub regenerate: bool,
    /// Print the plan and stop
    #[arg(long)]
    pub dry_run: bool,
    /// A prompt value: GEN.NAME=VALUE or INSTANCE.NAME=VALUE; visible to every user of this
    /// machine in the process list: prefer --prompt-file or VARS_PROMPT_<KEY>
    #[arg(long = "prompt", value_name = "GEN.NAME=VALUE")]
    pub prompts: Vec<String>,
    /// A prompt value read from a file (- for standard input): GEN.NAME=PATH
    #[arg(long = "prompt-file", value_name = "GEN.NAME=PATH")]
    pub prompt_files: Vec<String>,
    /// Instances run in parallel (default: number of cores)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Run generator scripts without a sandbox (also needed for settings.sandbox: none)
    #[arg(long, env = "VARS_NO_SANDBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_sandbox: bool,
    /// Identity that unwraps the vault (age identity file or ssh private key; repeatable)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Accept this vault recipient although keys/vault.pub changed since this machine last
    /// used the store (ask an admin for the new one)
    #[arg(long, value_name = "AGE1…")]
    pub trust_vault: Option<String>,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let mut config = global.load_to_encrypt()?;
    let store = config.store();
    let request = Request {
        selection: Selection {
            machines: args.machines,
            users: args.users,
            items: args.generators,
        },
        regenerate: args.regenerate,
        trust_vault: args.trust_vault,
    };
    let mut prompts = ui::prompt_values(&args.prompts, &args.prompt_files)?;
    prompts
        .validate(&config)
        .map_err(|e| CliError::usage(e.to_string()))?;

    let _lock = ui::lock_store(&store, args.dry_run)?;
    let plan = vars::generate::plan(&config, &store, &request, &prompts)?;
    if plan.is_empty() {
        ui::status("Nothing to do: every selected var is current.");
        return Ok(());
    }
    ui::status(if args.dry_run {
        "Plan (dry run, nothing changes):"
    } else {
        "Plan:"
    });
    ui::print_generate_plan(&config, &plan);
    if args.dry_run {
        return Ok(());
    }
    let sandbox = ui::sandbox(
        &config,
        args.no_sandbox,
        plan.plan.to_generate().next().is_some(),
    )?;
    let bar = ui::progress(plan.plan.to_generate().count() as u64, "generating");
    let on_done: Option<vars::generate::OnDone> = bar.clone().map(|b| {
        Box::new(move |instance: &vars::model::InstanceId| {
            b.set_message(instance.to_string());
            b.inc(1);
        }) as vars::generate::OnDone
    });
    let asker = ui::TerminalAsker::new();
    let opts = vars::generate::Options {
        jobs: ui::jobs(args.jobs),
        sandbox,
        prompts: &prompts,
        asker: asker.as_ref().map(|a| a as &dyn vars::prompt::Asker),
        identity_files: args.identities,
        on_done,
    };
    let result = vars::generate::apply(&mut config, &store, plan, &opts);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = result?;
    if report.created_vault {
        ui::status("created the vault key");
    }
    let removed = if report.removed.is_empty() {
        String::new()
    } else {
        format!(", {} moved instance(s) removed", report.removed.len())
    };
    ui::status(format!(
        "Done: {} generated, {} re-encrypted, {} manifest(s) updated{removed}.",
        report.generated.len(),
        report.rekeyed.len(),
        report.manifests.len()
    ));
    Ok(())
}
