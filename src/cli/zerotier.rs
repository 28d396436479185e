//! `vars zerotier-identity SECRET PUBLIC` (hidden): write a new ZeroTier identity, like
//! `zerotier-idtool generate SECRET PUBLIC`. The shipped `zerotier-*` generators run it inside
//! the sandbox (`runtime-inputs: [vars]` is the running vars binary), because zerotier-idtool
//! is not packaged everywhere (issue 14).

use std::path::PathBuf;

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write identity.secret here (a new file, mode 0600)
    #[arg(value_name = "SECRET")]
    pub secret: PathBuf,
    /// Write identity.public here (a new file, mode 0644)
    #[arg(value_name = "PUBLIC")]
    pub public: PathBuf,
}

pub fn run(args: Args) -> Result<(), CliError> {
    let id = vars::zerotier::Identity::generate()
        .map_err(|e| CliError::new(format!("cannot read random bytes: {e}")))?;
    vars::fs_util::write_new(&args.secret, id.secret_string().expose(), 0o600)
        .map_err(|e| CliError::new(e.to_string()))?;
    vars::fs_util::write_new(&args.public, id.public_string().as_bytes(), 0o644)
        .map_err(|e| CliError::new(e.to_string()))?;
    Ok(())
}
