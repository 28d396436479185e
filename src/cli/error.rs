//! The CLI's one error type: a message, hints that say how to fix it, and an exit code.

use std::fmt;

/// Exit codes (DESIGN §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Something went wrong.
    Error = 1,
    /// The command line is wrong.
    Usage = 2,
    /// `check`/`scan` found problems.
    Findings = 3,
}

/// An error ready to print.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub hints: Vec<String>,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Error,
            message: message.into(),
            hints: vec![],
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Usage,
            message: message.into(),
            hints: vec![],
        }
    }
    pub fn findings(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Findings,
            message: message.into(),
            hints: vec![],
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for CliError {
    /// Messages quote the repository (names, recipients, serde's complaints about a file):
    /// control characters are escaped here, the one place every error is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error: {}", vars::text::escape_lines(&self.message))?;
        for h in &self.hints {
            write!(f, "\nHint: {}", vars::text::escape_lines(h))?;
        }
        Ok(())
    }
}

impl From<vars::model::ConfigError> for CliError {
    fn from(e: vars::model::ConfigError) -> Self {
        match e {
            vars::model::ConfigError::NotFound { .. } => CliError::new(e.to_string())
                .hint("run vars in your fleet repository, pass -C DIR or --config FILE, or create one with vars init"),
            vars::model::ConfigError::Invalid(d) => CliError::new(format!("invalid declarations:\n{d}")),
            vars::model::ConfigError::Cycle(c) => {
                CliError::new(c.to_string()).hint("remove one of the dependencies on the cycle")
            }
            vars::model::ConfigError::GeneratedChanged { ref found, .. } => {
                let hint = format!("if it was regenerated on purpose (vars generate --regenerate on another machine), confirm it here: vars trust {found}");
                CliError::new(e.to_string())
                    .hint("someone changed a machine's generated key in the store: if no one regenerated it, the repository was tampered with and secrets encrypted now would be readable by whoever holds that key")
                    .hint(hint)
            }
            other => CliError::new(other.to_string()),
        }
    }
}

impl From<vars::plan::PlanError> for CliError {
    fn from(e: vars::plan::PlanError) -> Self {
        let hint = match &e {
            vars::plan::PlanError::VaultMissing { .. } => {
                Some("restore keys/ from version control (git checkout -- vars/keys)")
            }
            vars::plan::PlanError::Store(_) => None,
        };
        let err = CliError::new(e.to_string());
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

impl From<vars::store::StoreError> for CliError {
    fn from(e: vars::store::StoreError) -> Self {
        let err = CliError::new(e.to_string());
        match e {
            vars::store::StoreError::Locked { .. } => err.hint("wait for the other vars process to finish"),
            vars::store::StoreError::BadMeta { .. } => err.hint("restore it from version control, or regenerate the instance with vars generate --regenerate"),
            _ => err,
        }
    }
}

impl From<vars::identity::IdentityError> for CliError {
    fn from(e: vars::identity::IdentityError) -> Self {
        use vars::crypto::CryptoError as C;
        use vars::identity::IdentityError as I;
        let err = CliError::new(e.to_string());
        match e {
            I::TooOpen { ref path, .. } => err.hint(format!("make it private: chmod 600 {} (ssh refuses such keys too)", path.display())),
            I::Missing { ref named_by, .. } => err.hint(format!("check the path given by {named_by}, or unset it to use the default places")),
            I::Bad(C::RsaIdentity { .. }) => err.hint("use an ed25519 ssh key (ssh-keygen -t ed25519) or an age identity (vars keygen) as your identity; ssh-rsa recipients keep working"),
            I::NoneFound { .. } => err.hint("pass --identity FILE (an age identity, ssh private key or plugin identity of an admin), set VARS_IDENTITY_FILE, or create one with vars keygen"),
            I::Bad(C::NoPassphrase { .. }) => err.hint("set VARS_PASSPHRASE_FILE to a file (mode 0600) holding the passphrase, or run vars on a terminal"),
            I::Bad(C::WrongPassphrase { .. }) => err.hint("check the passphrase (VARS_PASSPHRASE_FILE, if set, must hold exactly the passphrase; one trailing newline is ignored)"),
            I::Bad(C::PluginMissing { ref binary, .. }) => {
                let how = if binary == "age-plugin-yubikey" {
                    "install it (cargo install age-plugin-yubikey, or your distribution's age-plugin-yubikey package)".to_owned()
                } else {
                    format!("install {binary} (see the plugin's documentation)")
                };
                err.hint(format!("{how} and make sure {binary} is on PATH"))
            }
            I::FileExists { .. } | I::KeyringExists => err.hint("pass --force to replace it (the old identity is lost: rekey first if it is an admin's), or choose another place with --out FILE"),
            I::NoDefaultPath => err.hint("pass --out FILE"),
            I::Bad(C::PassphraseFile(_)) => err.hint("point VARS_PASSPHRASE_FILE at a readable file, or unset it to be asked on the terminal"),
            I::Keyring(k) => k.into(),
            I::Bad(_) | I::Write(_) => err,
        }
    }
}

impl From<vars::keyring::KeyringError> for CliError {
    fn from(e: vars::keyring::KeyringError) -> Self {
        use vars::keyring::KeyringError as K;
        let err = CliError::new(e.to_string());
        match e {
            K::NoSession => err.hint("run inside a session keyring: keyctl session - vars … (keyctl is in the keyutils package), or use an identity file (--identity FILE, vars keygen --out FILE); nothing was changed"),
            K::Denied { .. } => err.hint("unlock the keychain (macOS: security unlock-keychain), or check the keyring's permissions (keyctl show @s); nothing was changed"),
            K::Unsupported => err.hint("use an identity file instead: --identity FILE, or vars keygen --out FILE"),
            K::Failed { .. } => err,
        }
    }
}

impl From<vars::vault::OpenError> for CliError {
    fn from(e: vars::vault::OpenError) -> Self {
        use vars::vault::OpenError as O;
        match e {
            O::NoVault { .. } => CliError::new(e.to_string()).hint("generate first: vars generate"),
            O::Identity(i) => i.into(),
            O::Vault(v) => v.into(),
            O::Keyring(k) => k.into(),
        }
    }
}

impl From<vars::vault::VaultError> for CliError {
    fn from(e: vars::vault::VaultError) -> Self {
        let err = CliError::new(e.to_string());
        match e {
            vars::vault::VaultError::NotAnAdmin { .. } => err.hint(
                "use the identity of a user listed under admins: in vars.yaml (--identity FILE)",
            ),
            vars::vault::VaultError::Store(s) => s.into(),
            vars::vault::VaultError::Changed { ref found, .. } => err
                .hint("someone changed keys/vault.pub: if it was not an admin rotating the vault key, the repository was tampered with and secrets encrypted now would be readable by whoever holds that key")
                .hint(format!("ask an admin whether {found} is the new vault recipient; if it is, confirm it on this machine: vars trust {found}")),
            vars::vault::VaultError::UnprovenRotation { .. } => err.hint("if no admin is rotating the vault key right now, someone planted them: delete keys/next.age and keys/next.pub (git rm), find out who committed them, then run vars check"),
            vars::vault::VaultError::UnverifiedRecord { .. } => err.hint("rotate the vault key, which re-encrypts every secret and writes an authenticated record: vars rekey --rotate-vault"),
            vars::vault::VaultError::Mismatch { .. } => err.hint("restore vars/keys/ from version control and find out who changed it"),
            _ => err.hint("restore vars/keys/ from version control"),
        }
    }
}

impl From<vars::generate::GenerateError> for CliError {
    fn from(e: vars::generate::GenerateError) -> Self {
        use vars::generate::GenerateError as G;
        match e {
            G::Selection(s) => s.into(),
            G::Plan(p) => p.into(),
            G::Rekey(r) => super::rekey::rekey_error(r),
            G::Seal {
                source: vars::seal::SealError::Sops(s),
                ..
            } => sops_error(*s),
            G::Damaged { .. } => CliError::new(e.to_string()).hint("restore them from version control, or replace them with new values: vars generate --regenerate <GEN> --machine/--user …"),
            G::RotationInterrupted => CliError::new(e.to_string()).hint("finish it first: vars rekey --yes"),
            G::Identity(i) => i.into(),
            G::Vault(v) => v.into(),
            G::Open(o) => o.into(),
            G::Store(s) => s.into(),
            G::Prompt(p @ vars::prompt::PromptError::Missing { .. }) => {
                CliError::new(p.to_string()).hint("pass each with --prompt-file GEN.NAME=PATH (- for standard input), VARS_PROMPT_<KEY>=VALUE in the environment, or --prompt GEN.NAME=VALUE (visible in the process list); or run on a terminal")
            }
            G::StoredPrompts { .. } => CliError::new(e.to_string()).hint("pass the identity of an admin (--identity FILE, or vars unlock), or give new values with --prompt-file GEN.NAME=PATH"),
            G::Sandbox(s @ (vars::sandbox::SandboxError::BubblewrapNotFound | vars::sandbox::SandboxError::BubblewrapUnusable { .. } | vars::sandbox::SandboxError::RuntimeDirNotTmpfs { .. })) => CliError::new(s.to_string()),
            other => CliError::new(other.to_string()).hint("nothing of the failed instance was written; fix the generator and run vars generate again"),
        }
    }
}

impl From<vars::generate::SelectionError> for CliError {
    fn from(e: vars::generate::SelectionError) -> Self {
        use vars::generate::SelectionError as S;
        let err = CliError::new(e.to_string());
        match &e {
            S::UnknownMachine { known, .. } => {
                err.hint(format!("declared machines: {}", known.join(", ")))
            }
            S::UnknownUser { known, .. } => {
                err.hint(format!("declared users: {}", known.join(", ")))
            }
            S::UnknownGenerator { .. } => {
                err.hint("assign it to a machine, user or tag in vars.yaml")
            }
        }
    }
}

/// A failure of the sops program, with what to do about it.
pub fn sops_error(e: vars::sops::SopsError) -> CliError {
    let err = CliError::new(e.to_string());
    match e.hint() {
        "" => err,
        h => err.hint(h),
    }
}
