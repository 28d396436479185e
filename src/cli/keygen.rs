//! `vars keygen [--keyring | --out FILE] [--force]`: a new X25519 identity for an admin or a
//! user. Its recipient goes to stdout (data, for vars.yaml); where the identity went, to stderr.

use std::path::PathBuf;

use vars::identity::{self, Destination};

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store the identity in the OS keyring (kernel keyring on Linux, login keychain on macOS)
    #[arg(long, conflicts_with = "out")]
    pub keyring: bool,
    /// Write the identity to FILE [default: ~/.config/vars/identity.txt]
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Replace an existing identity (the old one is gone for good)
    #[arg(long)]
    pub force: bool,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let dest = if args.keyring {
        Destination::Keyring
    } else {
        match args.out {
            Some(p) => Destination::File(global.cwd()?.join(p)),
            None => Destination::File(
                identity::default_identity_path()
                    .ok_or_else(|| CliError::from(identity::IdentityError::NoDefaultPath))?,
            ),
        }
    };
    let recipient = identity::keygen(&dest, args.force)?;
    ui::data(format!("{recipient}\n").as_bytes())?;
    match &dest {
        Destination::File(p) => ui::status(format!(
            "wrote a new identity to {} (mode 0600)",
            p.display()
        )),
        Destination::Keyring => {
            ui::status(format!(
                "stored a new identity in {} as {}",
                vars::keyring::backend_name(),
                identity::KEYRING_SOURCE
            ));
            if cfg!(target_os = "linux") {
                ui::status(
                    "warning: the kernel keyring lives in memory: it is lost at reboot; \
                     keep a file identity of this admin too, or be ready to rotate it",
                );
            }
        }
    }
    ui::status(
        "add the recipient (stdout) to your user's recipients in vars.yaml, then run vars rekey",
    );
    Ok(())
}
