//! `vars trust-vault RECIPIENT`: confirm, on this machine, that the store's changed
//! `keys/vault.pub` is genuine (an admin rotated the vault key and told you its new recipient).
//! vars then encrypts to it; until then it refuses to (DESIGN §4).

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vault recipient an admin told you (age1…); it must be the one in keys/vault.pub
    #[arg(value_name = "AGE1…")]
    pub recipient: String,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    let store = config.store();
    let current = vars::vault::vault_recipient(&store)?
        .ok_or_else(|| CliError::new("this store has no vault yet (keys/vault.pub)"))?;
    if current != args.recipient.trim() {
        return Err(CliError::new(format!(
            "keys/vault.pub is {current}, not {}",
            vars::text::escape(args.recipient.trim())
        ))
        .hint(
            "compare the recipient with the admin who rotated the vault key; nothing was recorded",
        ));
    }
    vars::vault::record_pin(&store, &current);
    ui::status(format!(
        "this machine now trusts {current} as the vault of {}",
        store.dir.display()
    ));
    Ok(())
}
