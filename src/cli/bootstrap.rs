//! `vars bootstrap --machine M DIR`: write the host key vars generated for a new machine into
//! DIR (nixos-anywhere's `--extra-files` layout), for its first boot.

use std::path::PathBuf;

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new machine (its recipients name a { generated: … } host key)
    #[arg(long, value_name = "M")]
    pub machine: String,
    /// Where to write etc/ssh/… (created; existing files are never overwritten)
    #[arg(value_name = "DIR")]
    pub target: PathBuf,
    /// Identity that unwraps the vault (an admin's; repeatable)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    use vars::bootstrap::BootstrapError as B;
    let config = global.load_to_encrypt()?;
    let store = config.store();
    let dir = global.cwd()?.join(&args.target);
    let written = vars::bootstrap::bootstrap(&config, &store, &args.machine, &dir, &args.identities)
        .map_err(|e| match e {
            B::Open(o) => o.into(),
            B::Store(s) => s.into(),
            B::NotGenerated(..) => CliError::new(e.to_string()),
            B::NothingGenerated(..) => CliError::new(e.to_string()).hint(
                "declare the host key as generated: recipients: [{ generated: ssh-host-ed25519/ssh_host_ed25519_key.pub }]",
            ),
            other => CliError::new(other.to_string()),
        })?;
    for p in &written {
        ui::status(format!("wrote {}", p.display()));
    }
    ui::status(format!(
        "DIR holds {}'s private host key: copy it to the new host (nixos-anywhere --extra-files {}), then delete it",
        args.machine,
        dir.display()
    ));
    Ok(())
}
