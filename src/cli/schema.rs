//! `vars schema`: print the JSON schema (the committed `schema/*.json` must equal this).

use super::{CliError, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the schema of a generator file instead of vars.yaml
    #[arg(long)]
    pub generator: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let text = if args.generator {
        vars::spec::generator_schema()
    } else {
        vars::spec::vars_schema()
    };
    ui::data(text.as_bytes())
}
