//! `vars init`: write a commented `vars.yaml` and the JSON schemas editors use to check it.

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Overwrite an existing vars.yaml
    #[arg(long)]
    pub force: bool,
}

const TEMPLATE: &str = r#"# yaml-language-server: $schema=./schema/vars.schema.json
# vars: declarative secrets for this fleet. Fill in recipients, then run `vars generate`.
version: 1
settings:
  store: vars          # where generated vars are committed
  sandbox: auto        # bubblewrap on Linux, sandbox-exec on macOS
admins: [me]           # users who can read every secret (through the vault key)
users:
  me:
    # your age recipient (vars keygen prints one) or ssh public key
    recipients: ["age1..."]
machines:
  myhost:
    # the host's ssh key: ssh-keyscan -t ed25519 myhost | cut -d' ' -f2-
    recipients: ["ssh-ed25519 AAAA..."]
    users: [me]
    generators: [ssh-host-ed25519]   # shipped with vars
generators: {}
"#;

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let dir = global.cwd()?;
    let file = dir.join(vars::model::CONFIG_FILE);
    if file.exists() && !args.force {
        return Err(CliError::new(format!("{} already exists", file.display()))
            .hint("pass --force to overwrite it"));
    }
    let write = |path: std::path::PathBuf, text: &str| {
        vars::fs_util::write_atomic(&path, text.as_bytes(), 0o644)
            .map_err(|e| CliError::new(e.to_string()))
    };
    write(file.clone(), TEMPLATE)?;
    write(
        dir.join("schema/vars.schema.json"),
        &vars::spec::vars_schema(),
    )?;
    write(
        dir.join("schema/generator.schema.json"),
        &vars::spec::generator_schema(),
    )?;
    ui::status(format!(
        "wrote {} and schema/; fill in the recipients, then run vars generate",
        file.display()
    ));
    Ok(())
}
