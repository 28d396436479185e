//! `vars install`: decrypt a machine's or user's secrets into a RAM file system at activation
//! time (`docs/install.md`, `docs/install-manifest.md`). Parses the command line into a
//! [`vars::install::Request`], runs it, and prints what changed (names only) to stderr.

use std::path::PathBuf;

use vars::install::{InstallError, Outcome, Request, RestartVia};
use vars::spec::NeededFor;
use vars::text::escape;

use super::{CliError, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The install manifest a Nix module wrote, or a store manifest.json (with --store)
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The store a store manifest's paths are relative to (hosts without Nix)
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Identity to decrypt with: a host ssh key or an age identity file (repeatable; missing files are skipped)
    #[arg(long = "identity", short = 'i', value_name = "FILE", required = true)]
    pub identities: Vec<PathBuf>,
    /// The symlink to the current generation, e.g. /run/vars
    #[arg(long, value_name = "PATH")]
    pub target: PathBuf,
    /// Where the generations live [default: TARGET.d]
    #[arg(long, value_name = "DIR")]
    pub mount_point: Option<PathBuf>,
    /// Install the files needed for this phase
    #[arg(long, value_enum, default_value_t = Phase::Services)]
    pub phase: Phase,
    /// Generations to keep, the new one included (0: never prune)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub keep: u64,
    /// Print what would change; mount and write nothing (also NIXOS_ACTION=dry-activate)
    #[arg(long)]
    pub dry_run: bool,
    /// Give every file to 0:0 without looking owners up
    #[arg(long)]
    pub ignore_passwd: bool,
    /// Install as the current user: no mount, no owners; the mount point must be on a tmpfs such as $XDG_RUNTIME_DIR
    #[arg(long)]
    pub user_mode: bool,
    /// Mount tmpfs (noswap) instead of ramfs
    #[arg(long)]
    pub tmpfs: bool,
    /// Restart units of changed files with systemctl, list them for NixOS, or not at all [default: activation-list when NIXOS_ACTION is set, else systemctl]
    #[arg(long, value_enum, value_name = "HOW", env = vars::env::RESTART_VIA)]
    pub restart_via: Option<Via>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// Files needed before users are created (password hashes)
    Users,
    /// Everything else
    Services,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// systemctl --no-block try-restart / try-reload-or-restart
    Systemctl,
    /// Append to /run/nixos/activation-{restart,reload}-list
    ActivationList,
    /// Only report the units
    None,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let nixos_action = std::env::var(vars::env::NIXOS_ACTION).ok();
    let dry_run = args.dry_run || nixos_action.as_deref() == Some("dry-activate");
    let restart_via = match args.restart_via {
        Some(Via::Systemctl) => RestartVia::Systemctl,
        Some(Via::ActivationList) => RestartVia::ActivationList,
        Some(Via::None) => RestartVia::None,
        None if nixos_action.is_some() => RestartVia::ActivationList,
        None => RestartVia::Systemctl,
    };
    let req = Request {
        manifest: args.manifest,
        store: args.store,
        identities: args.identities,
        target: args.target,
        mount_point: args.mount_point,
        phase: match args.phase {
            Phase::Users => NeededFor::Users,
            Phase::Services => NeededFor::Services,
        },
        keep: args.keep,
        dry_run,
        ignore_passwd: args.ignore_passwd,
        user_mode: args.user_mode,
        tmpfs: args.tmpfs,
        restart_via,
        activation_dir: std::env::var_os(vars::env::ACTIVATION_DIR)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(vars::install::ACTIVATION_DIR)),
    };
    let out = vars::install::install(&req).map_err(install_error)?;
    report(&req, &out);
    if out.late.is_empty() {
        return Ok(());
    }
    let mut message = format!(
        "generation {} is installed at {}, but not everything after the switch worked:",
        out.generation.unwrap_or_default(),
        req.target.display()
    );
    for p in &out.late {
        message.push_str(&format!("\n  {p}"));
    }
    Err(CliError::new(message).hint("fix the cause and run vars install again"))
}

fn report(req: &Request, out: &Outcome) {
    let dry = req.dry_run;
    for w in &out.warnings {
        ui::status(format!("warning: {}", escape(w)));
    }
    if let Some(fs) = out.mounted {
        ui::status(format!(
            "mounted {} at {}",
            fs.name(),
            req.mount_point().display()
        ));
    }
    match &out.changes {
        None => ui::status(format!(
            "no generation is running at {}: nothing to compare with or restart",
            req.target.display()
        )),
        Some(c) => {
            for (verb, would, list) in [
                ("adding", "add", &c.added),
                ("modifying", "modify", &c.modified),
                ("removing", "remove", &c.removed),
            ] {
                for rel in list {
                    if dry {
                        ui::status(format!("would {would} secret: {}", escape(rel)));
                    } else {
                        ui::status(format!("{verb} secret: {}", escape(rel)));
                    }
                }
            }
        }
    }
    for (what, units) in [("restart", &out.restart), ("reload", &out.reload)] {
        if units.is_empty() {
            continue;
        }
        let how = match (req.restart_via, dry) {
            (RestartVia::None, _) => format!("to {what} (--restart-via none: not done)"),
            (RestartVia::ActivationList, false) => format!("listed for NixOS to {what}"),
            (RestartVia::ActivationList, true) => {
                format!("listed for NixOS's dry activation to {what}")
            }
            (RestartVia::Systemctl, true) => format!("would {what}"),
            (RestartVia::Systemctl, false) => format!("{what}ing (systemctl --no-block)"),
        };
        ui::status(format!("{how}: {}", escape(&units.join(" "))));
    }
    let whose = out
        .principal
        .as_ref()
        .map(|(kind, name)| format!(" of {} {}", kind.as_str(), escape(name)))
        .unwrap_or_default();
    match (out.generation, &out.dir) {
        (Some(n), Some(dir)) => ui::status(format!(
            "installed generation {n}{whose}: {} file{} at {} -> {}",
            out.installed,
            if out.installed == 1 { "" } else { "s" },
            req.target.display(),
            dir.display()
        )),
        _ => ui::status(format!(
            "dry run: would install {} file{}{whose} at {}; nothing was mounted or written",
            out.installed,
            if out.installed == 1 { "" } else { "s" },
            req.target.display()
        )),
    }
    if !out.pruned.is_empty() {
        let list: Vec<String> = out.pruned.iter().map(u64::to_string).collect();
        ui::status(format!("removed old generations: {}", list.join(", ")));
    }
}

fn install_error(e: InstallError) -> CliError {
    match e {
        InstallError::Invalid { ref problems } => {
            let mut message = e.to_string();
            for p in problems {
                message.push_str(&format!("\n  {p}"));
            }
            CliError::new(message).hint("fix every problem above and run vars install again")
        }
        InstallError::Usage(m) => CliError::usage(m),
        InstallError::Mount { .. } => CliError::new(e.to_string()).hint(
            "vars install mounts as root (CAP_SYS_ADMIN); as a user, pass --user-mode and a mount point in $XDG_RUNTIME_DIR",
        ),
        InstallError::NotInMemory { .. } => CliError::new(e.to_string())
            .hint("choose a mount point on a tmpfs or ramfs, e.g. in $XDG_RUNTIME_DIR"),
        other => CliError::new(format!(
            "{other}\nthe running generation is untouched"
        )),
    }
}
