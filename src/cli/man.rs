//! `vars man DIR` (hidden): write the man pages of `vars` and every subcommand, rendered from
//! the clap definitions by clap_mangen, into DIR. The repository keeps them in `docs/man/`
//! (a test renders them again and compares); the flake package installs them.

use std::path::PathBuf;

use clap::CommandFactory as _;

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write vars.1, vars-generate.1, … into this directory (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::new(format!(
            "cannot write man pages to {}: {e}",
            args.dir.display()
        ))
    };
    std::fs::create_dir_all(&args.dir).map_err(fail)?;
    let cmd = super::Cli::command().disable_help_subcommand(true);
    clap_mangen::generate_to(cmd, &args.dir).map_err(fail)
}
