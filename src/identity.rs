//! Finding the admin's (or user's) identities in the documented order (DESIGN §4). What they
//! unlock is [`crate::vault`]'s business.

use std::path::PathBuf;

use crate::crypto::{CryptoError, Identities};
use crate::env;

/// Errors finding or loading identities.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No identity file was found anywhere.
    #[error("no identity found; tried: {}", tried.join(", "))]
    NoneFound {
        /// Every place tried.
        tried: Vec<String>,
    },
    /// An identity file exists but cannot be used.
    #[error(transparent)]
    Bad(#[from] CryptoError),
}

/// Where identities are looked for, in order: explicit `--identity` files, then
/// `$VARS_IDENTITY_FILE`, `~/.config/vars/identity.txt`, `~/.ssh/id_ed25519`.
/// The first source that exists wins (explicit files are all used).
pub fn candidate_paths(explicit: &[PathBuf]) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os(env::IDENTITY_FILE).filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    let config_home = std::env::var_os(env::XDG_CONFIG_HOME)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(env::HOME).map(|h| PathBuf::from(h).join(".config")));
    if let Some(c) = config_home {
        out.push(c.join("vars/identity.txt"));
    }
    if let Some(h) = std::env::var_os(env::HOME) {
        out.push(PathBuf::from(h).join(".ssh/id_ed25519"));
    }
    out
}

/// Load identities: every explicit file (errors are fatal), or the first default that exists.
pub fn load(explicit: &[PathBuf]) -> Result<Identities, IdentityError> {
    let candidates = candidate_paths(explicit);
    let mut ids = Identities::default();
    if !explicit.is_empty() {
        for p in &candidates {
            ids.add_file(p)?;
        }
        return Ok(ids);
    }
    for p in &candidates {
        if p.is_file() {
            ids.add_file(p)?;
            return Ok(ids);
        }
    }
    let mut tried: Vec<String> = vec!["--identity".into()];
    tried.extend(candidates.iter().map(|p| p.display().to_string()));
    if std::env::var_os(env::IDENTITY_FILE).is_none() {
        tried.insert(1, format!("${}", env::IDENTITY_FILE));
    }
    Err(IdentityError::NoneFound { tried })
}
