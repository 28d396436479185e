//! `vars generate`: plan, print the plan, then generate what is missing or stale.

use std::collections::BTreeSet;
use std::path::PathBuf;

use vars::model::{Config, InstanceId, Scope};

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
    /// Only these generators
    #[arg(value_name = "GEN")]
    pub generators: Vec<String>,
    /// Regenerate the selected instances even if they are current
    #[arg(long)]
    pub regenerate: bool,
    /// Print the plan and stop
    #[arg(long)]
    pub dry_run: bool,
    /// A prompt value: GEN.NAME=VALUE or INSTANCE.NAME=VALUE (e.g. users/alice/user-password.password=…)
    #[arg(long = "prompt", value_name = "GEN.NAME=VALUE")]
    pub prompts: Vec<String>,
    /// A prompt value read from a file: GEN.NAME=PATH
    #[arg(long = "prompt-file", value_name = "GEN.NAME=PATH")]
    pub prompt_files: Vec<String>,
    /// Instances run in parallel (default: number of cores)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Run generator scripts without a sandbox
    #[arg(long)]
    pub no_sandbox: bool,
    /// Identity that unwraps the vault (age identity file or ssh private key; repeatable)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
}

/// The instances selected by `--machine`, `--user` and generator names.
pub fn select(
    config: &Config,
    machines: &[String],
    users: &[String],
    generators: &[String],
) -> Result<BTreeSet<InstanceId>, CliError> {
    for m in machines {
        if !config.machines.contains_key(m) {
            return Err(
                CliError::new(format!("unknown machine {m:?}")).hint(format!(
                    "declared machines: {}",
                    config
                        .machines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }
    for u in users {
        if !config.users.contains_key(u) {
            return Err(CliError::new(format!("unknown user {u:?}")).hint(format!(
                "declared users: {}",
                config.users.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    for g in generators {
        if !config.instances.keys().any(|i| &i.generator == g) {
            return Err(
                CliError::new(format!("no instance of generator {g:?} is declared"))
                    .hint("assign it to a machine, user or tag in vars.yaml"),
            );
        }
    }
    let everything = machines.is_empty() && users.is_empty();
    let selected = config
        .instances
        .values()
        .filter(|inst| {
            let in_scope = everything
                || match &inst.id.scope {
                    Scope::Machine(m) => machines.contains(m),
                    Scope::User(u) => {
                        users.contains(u)
                            || machines
                                .iter()
                                .any(|m| config.machines[m].users.contains(u))
                    }
                    Scope::Shared => {
                        inst.machines.iter().any(|m| machines.contains(m))
                            || inst.users.iter().any(|u| users.contains(u))
                    }
                };
            in_scope && (generators.is_empty() || generators.contains(&inst.id.generator))
        })
        .map(|i| i.id.clone())
        .collect();
    Ok(selected)
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    let store = vars::store::Store::new(&config.store_dir);
    let targets = select(&config, &args.machines, &args.users, &args.generators)?;
    let regenerate = if args.regenerate {
        targets.clone()
    } else {
        BTreeSet::new()
    };
    let dag = vars::dag::Dag::from_config(&config);
    dag.topo_order().map_err(|e| {
        CliError::new(e.to_string()).hint("remove one of the dependencies on the cycle")
    })?;
    let prompts = vars::prompt::PromptValues::from_args(&args.prompts, &args.prompt_files)
        .map_err(|e| CliError::usage(e.to_string()))?;

    let _lock = ui::lock_store(&store, args.dry_run)?;
    let vault = vars::vault::vault_recipient(&store)?;
    if vars::vault::next_recipient(&store)?.is_some() {
        return Err(CliError::new("a vault key rotation was interrupted")
            .hint("finish it first: vars rekey --yes"));
    }
    let plan = vars::plan::plan(
        &config,
        &store,
        &dag,
        &targets,
        &regenerate,
        vault.as_deref(),
    )?;
    let damaged: Vec<String> = plan
        .instances
        .iter()
        .filter(|p| !regenerate.contains(&p.id))
        .filter(|p| matches!(&p.action, vars::plan::Action::Generate { reasons } if reasons.iter().any(|r| matches!(r, vars::plan::Reason::Damaged { .. }))))
        .map(|p| p.instance.clone())
        .collect();
    if !damaged.is_empty() {
        // A hand-modified store is not silently "repaired" by rotating the secret.
        return Err(CliError::new(format!("damaged instance(s): {}", damaged.join(", ")))
            .hint("restore them from version control, or replace them with new values: vars generate --regenerate <GEN> --machine/--user …"));
    }
    // Manifests left outdated by an interrupted run (or a vars.yaml change that touches no
    // instance, such as a file's mode) are work too; without this the hint of `vars check`
    // ("run vars generate") would lead nowhere.
    let outdated_manifests = vars::manifest::outdated(&config, &store)?.len();
    if plan.is_empty() && outdated_manifests == 0 {
        ui::status("Nothing to do: every selected var is current.");
        return Ok(());
    }
    ui::status(if args.dry_run {
        "Plan (dry run, nothing changes):"
    } else {
        "Plan:"
    });
    ui::print_plan(&plan);
    if args.dry_run {
        return Ok(());
    }
    let sandbox_setting = if args.no_sandbox || config.sandbox == vars::spec::SandboxChoice::None {
        vars::sandbox::SandboxSetting::None
    } else {
        vars::sandbox::SandboxSetting::Auto
    };
    let sandbox =
        vars::sandbox::detect(sandbox_setting).map_err(|e| CliError::new(e.to_string()))?;
    if matches!(sandbox, vars::sandbox::SandboxKind::Unsandboxed)
        && plan.to_generate().next().is_some()
    {
        ui::status(
            "warning: running generator scripts WITHOUT a sandbox (--no-sandbox / settings.sandbox: none)",
        );
    }
    let bar = ui::progress(plan.to_generate().count() as u64, "generating");
    let on_done: Option<vars::generate::OnDone> = bar.clone().map(|b| {
        Box::new(move |instance: &str| {
            b.set_message(instance.to_owned());
            b.inc(1);
        }) as vars::generate::OnDone
    });
    let opts = vars::generate::Options {
        jobs: args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        sandbox,
        prompts,
        identity_files: args.identities,
        on_done,
    };
    let result = vars::generate::apply(&config, &store, &dag, &plan, &opts);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let report = result?;
    if report.created_vault {
        ui::status("created the vault key");
    }
    ui::status(format!(
        "Done: {} generated, {} re-encrypted, {} manifest(s) updated.",
        report.generated.len(),
        report.rekeyed.len(),
        report.manifests.len()
    ));
    Ok(())
}
