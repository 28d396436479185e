//! `vars trust RECIPIENT`: confirm, on this machine, that a changed key in the store is
//! genuine: `keys/vault.pub` after an admin rotated the vault key, or a machine's
//! `{ generated: … }` recipient after someone regenerated it. vars encrypts to a changed key
//! only once it is confirmed (DESIGN §4); `trust-vault` is the older name.

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recipient you were told (age1… or ssh-ed25519 …); it must be the one the store holds
    #[arg(value_name = "RECIPIENT")]
    pub recipient: String,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    let store = config.store();
    let wanted = args.recipient.trim();
    if vars::vault::vault_recipient(&store)?.as_deref() == Some(wanted) {
        vars::vault::record_pin(&store, wanted);
        ui::status(format!(
            "this machine now trusts {wanted} as the vault of {}",
            store.dir.display()
        ));
        return Ok(());
    }
    for (name, machine) in &config.machines {
        for g in &machine.generated {
            if g.resolved.as_deref() != Some(wanted) {
                continue;
            }
            let id = vars::model::InstanceId {
                scope: vars::model::Scope::Machine(name.clone()),
                generator: g.generator.clone(),
            };
            let rel = store.file_rel(&id, &g.file, false);
            vars::vault::record_known(&store, &rel, wanted);
            ui::status(format!(
                "this machine now trusts {wanted} as machine {name}'s key ({rel})"
            ));
            return Ok(());
        }
    }
    Err(CliError::new(format!(
        "{} is neither keys/vault.pub nor a machine's generated key in {}",
        vars::text::escape(wanted),
        store.dir.display()
    ))
    .hint("compare the recipient with the person who changed it (vars list shows the machines' keys); nothing was recorded"))
}
