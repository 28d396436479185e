//! `vars set INSTANCE/FILE`: replace one value, read from standard input (hidden prompt on a
//! terminal) or `--from-file`, never from the command line (argv is world-readable).

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use vars::secret::SecretBytes;
use vars::set::{InstanceValues, Options, SetError, Value};

use super::{CliError, Global, ui};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The value: INSTANCE/FILE, e.g. machines/cinnabar/borg-passphrase/passphrase
    pub path: String,
    /// Read the value from this file instead of standard input (exactly its bytes)
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Accept this vault recipient although keys/vault.pub changed since this machine last
    /// used the store (ask an admin for the new one)
    #[arg(long, value_name = "AGE1…")]
    pub trust_vault: Option<String>,
}

pub fn run(global: &Global, args: Args) -> Result<(), CliError> {
    let config = global.load_to_encrypt()?;
    let store = config.store();
    let (id, file) = vars::set::resolve(&config, &args.path).map_err(set_error)?;
    let secret = config.generator(&id).files[&file].secret;
    let bytes = read_value(&args, &format!("{id}/{file}"), secret)?;
    let _lock = ui::lock_store(&store, false)?;
    let report = vars::set::set(
        &config,
        &store,
        vec![InstanceValues {
            id: id.clone(),
            values: vec![Value {
                file: file.clone(),
                bytes,
            }],
        }],
        &Options {
            trust_vault: args.trust_vault,
        },
    )
    .map_err(set_error)?;
    if report.created_vault {
        ui::status("created the vault key");
    }
    ui::status(format!(
        "set {id}/{file} ({}; new generation of {id})",
        if secret {
            "encrypted to its declared readers"
        } else {
            "public"
        }
    ));
    if !report.stale_dependents.is_empty() {
        ui::status(format!(
            "stale now (they depend on it): {}; run vars generate to regenerate them",
            report
                .stale_dependents
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (kind, name) in &report.manifests {
        ui::status(format!("  rewrote {}/{name}/manifest.json", kind.dir()));
    }
    Ok(())
}

/// The value: `--from-file`, else standard input; on a terminal, asked without echo.
fn read_value(args: &Args, what: &str, secret: bool) -> Result<SecretBytes, CliError> {
    if let Some(path) = &args.from_file {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
        return Ok(SecretBytes::new(bytes));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let prompt = format!(
            "Value for {what}{}: ",
            if secret { " (not echoed)" } else { "" }
        );
        let line = if secret {
            rpassword::prompt_password(prompt)
                .map_err(|e| CliError::new(format!("cannot read the value: {e}")))?
        } else {
            ui::status(prompt.trim_end());
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .map_err(|e| CliError::new(format!("cannot read the value: {e}")))?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        };
        return Ok(SecretBytes::new(line.into_bytes()));
    }
    let mut bytes = Vec::new();
    let read = stdin
        .lock()
        .take(vars::sandbox::MAX_OUTPUT_BYTES + 1)
        .read_to_end(&mut bytes);
    // Zeroized on drop, also when reading failed half-way.
    let value = SecretBytes::new(bytes);
    read.map_err(|e| CliError::new(format!("cannot read the value from standard input: {e}")))?;
    Ok(value)
}

pub(super) fn set_error(e: SetError) -> CliError {
    let err = CliError::new(e.to_string());
    match e {
        SetError::UnknownInstance { .. } => {
            err.hint("vars list shows every instance and its files")
        }
        SetError::UnknownFile { .. } => {
            err.hint("only declared files can be set: add it under files: of the generator first")
        }
        SetError::NotGenerated { ref instance, .. } => err.hint(format!(
            "generate it first (vars generate {}), then replace the value",
            instance.generator
        )),
        SetError::DependencyMissing { .. } => err.hint("run vars generate first"),
        SetError::RotationInterrupted => err.hint("finish it first: vars rekey --yes"),
        SetError::Vault(v) => v.into(),
        SetError::Store(s) => s.into(),
        SetError::Seal {
            source: vars::seal::SealError::Sops(s),
            ..
        } => super::error::sops_error(*s),
        SetError::TooLarge { .. } | SetError::Seal { .. } => err.hint("nothing was changed"),
    }
}
