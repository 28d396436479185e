//! Argument parsing and dispatch. Each subcommand lives in its own file as an `Args` struct and
//! a `run` function; they parse, call the library, and print (data to stdout, the rest to stderr).

mod bootstrap;
mod check;
mod completions;
mod error;
mod generate;
mod generators;
mod get;
mod graph;
mod import;
mod init;
mod install;
mod keygen;
mod list;
mod man;
mod rekey;
mod scan;
mod schema;
mod set;
mod terminal;
mod trust;
mod ui;
mod unlock;
mod zerotier;

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::{CliError, Exit};

/// Declarative secrets for NixOS, nix-darwin and home-manager fleets.
#[derive(Debug, Parser)]
#[command(name = "vars", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Run as if started in DIR
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Use this vars.yaml instead of searching for one
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a vars.yaml to start from
    Init(init::Args),
    /// Generate missing and stale vars, re-encrypt stale secrets
    Generate(generate::Args),
    /// Re-encrypt stale secrets after machines, users or admins changed
    Rekey(rekey::Args),
    /// Check that every var exists, is current and is encrypted to the right recipients
    Check(check::Args),
    /// Check that no tracked or staged file holds plaintext key material
    Scan(scan::Args),
    /// List instances, their files and status
    List(list::Args),
    /// List the shipped generators with their files and parameters
    Generators(generators::Args),
    /// Print one value, decrypting it if needed
    Get(get::Args),
    /// Decrypt a machine's or user's secrets into a RAM file system (activation)
    Install(install::Args),
    /// Replace one value (from standard input or --from-file); its dependents become stale
    Set(set::Args),
    /// Bring in secrets from agenix, clan vars or sops-nix, values and readers kept
    Import(import::Args),
    /// Print the dependency graph
    Graph(graph::Args),
    /// Print the JSON schema of vars.yaml or of a generator file
    Schema(schema::Args),
    /// Print shell completions
    Completions(completions::Args),
    /// Create a new age identity and print its recipient
    Keygen(keygen::Args),
    /// Unwrap the vault once and keep it unlocked in the OS keyring for a while
    Unlock(unlock::UnlockArgs),
    /// Forget the unlocked vault of this store
    Lock(unlock::LockArgs),
    /// Write a new machine's generated host key into DIR for its first boot
    Bootstrap(bootstrap::Args),
    /// Confirm on this machine a changed keys/vault.pub or generated machine key
    #[command(alias = "trust-vault")]
    Trust(trust::Args),
    /// Write the man pages into a directory
    #[command(hide = true)]
    Man(man::Args),
    /// Write a new ZeroTier identity (used by the shipped zerotier generators)
    #[command(hide = true)]
    ZerotierIdentity(zerotier::Args),
}

/// Parse, run, print the error if any, and return the exit code.
pub fn main() -> i32 {
    // First, while the process has one thread: no core dumps, no inherited descriptors.
    if let Err(e) = vars::hardening::harden_process() {
        let _ = writeln!(std::io::stderr(), "warning: {e}");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage as i32
            } else {
                0
            };
        }
    };
    // Plugin messages and passphrases go through the terminal; the library never reads it.
    vars::crypto::set_interaction(std::sync::Arc::new(terminal::Terminal));
    if let Err(e) = vars::sandbox::install_interrupt_cleanup() {
        let _ = writeln!(std::io::stderr(), "warning: {e}");
    }
    let result = match cli.command {
        Command::Init(a) => init::run(&cli.global, a),
        Command::Generate(a) => generate::run(&cli.global, a),
        Command::Rekey(a) => rekey::run(&cli.global, a),
        Command::Check(a) => check::run(&cli.global, a),
        Command::Scan(a) => scan::run(&cli.global, a),
        Command::List(a) => list::run(&cli.global, a),
        Command::Generators(a) => generators::run(a),
        Command::Get(a) => get::run(&cli.global, a),
        Command::Install(a) => install::run(a),
        Command::Set(a) => set::run(&cli.global, a),
        Command::Import(a) => import::run(&cli.global, a),
        Command::Graph(a) => graph::run(&cli.global, a),
        Command::Schema(a) => schema::run(a),
        Command::Completions(a) => completions::run(a),
        Command::Keygen(a) => keygen::run(&cli.global, a),
        Command::Unlock(a) => unlock::run_unlock(&cli.global, a),
        Command::Lock(a) => unlock::run_lock(&cli.global, a),
        Command::Bootstrap(a) => bootstrap::run(&cli.global, a),
        Command::Trust(a) => trust::run(&cli.global, a),
        Command::Man(a) => man::run(a),
        Command::ZerotierIdentity(a) => zerotier::run(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            e.exit as i32
        }
    }
}

impl Global {
    /// The working directory the command acts in.
    pub fn cwd(&self) -> Result<PathBuf, CliError> {
        let here = std::env::current_dir()
            .map_err(|e| CliError::new(format!("cannot read the current directory: {e}")))?;
        Ok(match &self.dir {
            Some(d) => here.join(d),
            None => here,
        })
    }

    /// Find and load the declarations: the file named with `--config`, else the `vars.yaml`
    /// found by walking up (read without following links: the repository is untrusted).
    /// For a command that only reads: the machines' generated recipients are taken as the
    /// store has them.
    pub fn load(&self) -> Result<vars::model::Config, CliError> {
        self.load_with(vars::model::Pinning::Unchecked)
    }

    /// [`Global::load`] for a command that encrypts: each generated recipient must be the
    /// one this machine last saw (`vars trust` confirms a change).
    pub fn load_to_encrypt(&self) -> Result<vars::model::Config, CliError> {
        self.load_with(vars::model::Pinning::Checked {
            fresh: &Default::default(),
        })
    }

    fn load_with(
        &self,
        pinning: vars::model::Pinning<'_>,
    ) -> Result<vars::model::Config, CliError> {
        let mut config = match &self.config {
            Some(f) => vars::model::load(&self.cwd()?.join(f))?,
            None => vars::model::discover(&self.cwd()?)?,
        };
        config.resolve_generated(&config.store(), pinning)?;
        Ok(config)
    }
}
