//! `vars get PATH`: print one value. Public files are printed as stored; secrets are decrypted
//! with the unlocked vault, your identity directly, or through the vault if you are an admin.

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
    let store = config.store();
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
    let raw = store.read_file(id, file, def.secret)?.ok_or_else(|| {
        CliError::new(format!(
            "{} does not exist",
            store.file_path(id, file, def.secret).display()
        ))
        .hint(format!("generate it: vars generate {}", id.generator))
    })?;
    if !def.secret {
        return ui::data(&raw);
    }
    let mut reader = vars::seal::Reader::new(&store, &args.identities);
    let plain = reader
        .open(&raw, &format!("{id}/{file}"))
        .map_err(|e| match e {
            vars::seal::SealError::Vault(o) => CliError::from(*o),
            other => CliError::new(format!(
                "{}: {other}",
                store.file_path(id, file, true).display()
            )),
        })?;
    ui::data(plain.expose())
}
