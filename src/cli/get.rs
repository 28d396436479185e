//! `vars get PATH`: print one value. Public files are printed as stored; secrets are decrypted
//! with your identity directly, or through the vault if you are an admin.

use std::path::PathBuf;

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The value: INSTANCE/FILE, e.g. machines/cinnabar/ssh-host-ed25519/ssh_host_ed25519_key.pub
    pub path: String,
    /// Identity to decrypt with (age identity file or ssh private key; repeatable)
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load()?;
    let store = vars::store::Store::new(&config.store_dir);
    let (instance, file) = args
        .path
        .rsplit_once('/')
        .ok_or_else(|| CliError::usage(format!("{:?} is not INSTANCE/FILE", args.path)))?;
    let id = config
        .instances
        .keys()
        .find(|id| id.to_string() == instance)
        .ok_or_else(|| {
            CliError::new(format!("no instance {instance:?} is declared"))
                .hint("vars list shows every instance")
        })?;
    let def = config.generator(id).files.get(file).ok_or_else(|| {
        CliError::new(format!(
            "generator {:?} declares no file {file:?}",
            id.generator
        ))
    })?;
    let path = store.file_path(id, file, def.secret);
    let raw = std::fs::read(&path).map_err(|e| {
        CliError::new(format!("cannot read {}: {e}", path.display()))
            .hint(format!("generate it: vars generate {}", id.generator))
    })?;
    if !def.secret {
        return ui::data(&raw);
    }
    // A vault unlocked with `vars unlock` needs no identity; otherwise try your own key
    // (you may be a recipient), then the vault through it (you may be an admin).
    let through_vault = |vault: vars::crypto::VaultKey| {
        let mut vault_ids = vars::crypto::Identities::default();
        vault_ids.add_vault(&vault);
        vault_ids
            .decrypt(&raw)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display())))
    };
    let plain = match vars::vault::cached(&store).ok().flatten() {
        Some(vault) => through_vault(vault)?,
        None => {
            let ids = vars::identity::load(&args.identities)?;
            match ids.decrypt(&raw) {
                Ok(p) => p,
                Err(_) => through_vault(vars::vault::unwrap_vault(&store, &ids)?)?,
            }
        }
    };
    ui::data(plain.expose())
}
