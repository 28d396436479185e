//! `vars completions SHELL`.

use clap::CommandFactory as _;

use super::{Cli, CliError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "vars", &mut out);
    super::ui::data(&out)
}
