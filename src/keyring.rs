//! The OS keyring, for two things (DESIGN §4, §7):
//!
//! - an admin identity written by `vars keygen --keyring` and found by [`crate::identity`]
//!   (entry service `vars`, user `identity`), through `keyring-core` with an explicitly chosen
//!   store: the kernel keyring (keyutils) on Linux, the login keychain on macOS;
//! - the unwrapped vault key cached by `vars unlock` for a limited time and dropped by
//!   `vars lock`, keyed by the store's vault recipient so that stores never mix. [`crate::vault`]
//!   reads it back.
//!
//! On Linux the kernel keyring is used only inside a real session keyring (a login session
//! set up by `pam_keyinit`, or `keyctl session`). Without one the kernel falls back to the
//! per-user "user session" keyring, which is shared by every process of the user, outlives
//! logins and, in containers, often cannot be read back; vars refuses it before changing
//! anything. Keys live in kernel memory only: a reboot forgets them.
//!
//! Nothing here logs or formats key material.

use std::time::Duration;

use crate::secret::SecretBytes;

/// The keyring service every vars entry is filed under.
pub const SERVICE: &str = "vars";

/// The entry user of the admin identity written by `vars keygen --keyring`.
pub const IDENTITY_USER: &str = "identity";

/// Errors using the OS keyring. Each leaves the keyring as it was.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Linux: the process has no session keyring of its own (only the per-user fallback), e.g.
    /// in a container, over a non-PAM ssh, or under a CI runner.
    #[error(
        "the kernel keyring is not usable here: this process has no session keyring of its own"
    )]
    NoSession,
    /// The keyring refused access: a locked macOS keychain, or keyutils denying the operation.
    #[error("the OS keyring refused access: {reason}")]
    Denied {
        /// The platform's reason.
        reason: String,
    },
    /// The keyring failed for another reason (quota, platform error).
    #[error("the OS keyring could not {action}: {reason}")]
    Failed {
        /// What vars was doing ("store the identity", "read the cached vault key", …).
        action: &'static str,
        /// The platform's reason.
        reason: String,
    },
    /// This operating system has no keyring support in vars.
    #[error("vars supports the OS keyring only on Linux (keyutils) and macOS (keychain)")]
    Unsupported,
}

/// A short name of the keyring vars uses here, for messages ("the kernel keyring").
pub fn backend_name() -> &'static str {
    if cfg!(target_os = "linux") {
        "the kernel keyring (keyutils)"
    } else if cfg!(target_os = "macos") {
        "the login keychain"
    } else {
        "no OS keyring"
    }
}

/// Whether an admin identity is stored in the keyring.
pub fn identity_exists() -> Result<bool, KeyringError> {
    Ok(load_identity()?.is_some())
}

/// Store an age identity file's text as the keyring identity, replacing any earlier one
/// (the caller asks for `--force` before replacing).
pub fn store_identity(identity: &SecretBytes) -> Result<(), KeyringError> {
    platform::identity_entry()?
        .set_secret(identity.expose())
        .map_err(|e| core_error(e, "store the identity"))
}

/// The keyring identity's text, if one is stored.
pub fn load_identity() -> Result<Option<SecretBytes>, KeyringError> {
    match platform::identity_entry()?.get_secret() {
        Ok(bytes) => Ok(Some(SecretBytes::new(bytes))),
        Err(keyring_core::Error::NoEntry) => Ok(None),
        Err(e) => Err(core_error(e, "read the identity")),
    }
}

/// Cache the unwrapped vault key of the store whose vault recipient is `recipient` for `ttl`.
/// A cached key of the same store is replaced (and its timeout restarted).
pub fn cache_vault(
    recipient: &str,
    vault_secret: &SecretBytes,
    ttl: Duration,
) -> Result<(), KeyringError> {
    platform::cache_vault(&vault_description(recipient), vault_secret, ttl)
}

/// The cached vault key of the store whose vault recipient is `recipient`, if it is cached and
/// has not expired.
pub fn cached_vault(recipient: &str) -> Result<Option<SecretBytes>, KeyringError> {
    platform::cached_vault(&vault_description(recipient))
}

/// Drop the cached vault key of that store; `Ok(false)` if none was cached.
pub fn drop_vault(recipient: &str) -> Result<bool, KeyringError> {
    platform::drop_vault(&vault_description(recipient))
}

/// The keyring description of a store's cached vault key.
fn vault_description(recipient: &str) -> String {
    format!("vars-vault:{}", recipient.trim())
}

/// Map a keyring-core error; its messages never contain the secret.
fn core_error(e: keyring_core::Error, action: &'static str) -> KeyringError {
    match e {
        keyring_core::Error::NoStorageAccess(p) => KeyringError::Denied {
            reason: p.to_string(),
        },
        keyring_core::Error::NoDefaultStore => KeyringError::Unsupported,
        // BadEncoding / BadDataFormat carry the stored bytes: never format them.
        keyring_core::Error::BadEncoding(_) | keyring_core::Error::BadDataFormat(..) => {
            KeyringError::Failed {
                action,
                reason: "the stored value is malformed".into(),
            }
        }
        other => KeyringError::Failed {
            action,
            reason: other.to_string(),
        },
    }
}

#[cfg(target_os = "linux")]
mod platform {
    //! keyutils: the identity through `linux-keyutils-keyring-store`, the vault cache through
    //! `linux-keyutils` directly, because keyring-core has no notion of a timeout.

    use std::time::Duration;

    use keyring_core::Entry;
    use keyring_core::api::CredentialStoreApi as _;
    use linux_keyutils::{KeyError, KeyRing, KeyRingIdentifier};

    use super::{IDENTITY_USER, KeyringError, SERVICE, core_error};
    use crate::secret::SecretBytes;

    /// The process's own session keyring; the per-user fallback (`_uid_ses.<uid>`) is refused.
    fn session() -> Result<KeyRing, KeyringError> {
        let ring = KeyRing::from_special_id(KeyRingIdentifier::Session, false)
            .map_err(|_| KeyringError::NoSession)?;
        let meta = ring.metadata().map_err(|_| KeyringError::NoSession)?;
        if meta.get_description().starts_with("_uid_ses.") {
            return Err(KeyringError::NoSession);
        }
        Ok(ring)
    }

    fn key_error(e: KeyError, action: &'static str) -> KeyringError {
        match e {
            KeyError::AccessDenied | KeyError::PermissionDenied => KeyringError::Denied {
                reason: format!("{e:?}"),
            },
            other => KeyringError::Failed {
                action,
                reason: format!("{other:?}"),
            },
        }
    }

    pub(super) fn identity_entry() -> Result<Entry, KeyringError> {
        session()?;
        let store = linux_keyutils_keyring_store::Store::new()
            .map_err(|e| core_error(e, "open the kernel keyring"))?;
        store
            .build(SERVICE, IDENTITY_USER, None)
            .map_err(|e| core_error(e, "open the identity entry"))
    }

    pub(super) fn cache_vault(
        description: &str,
        secret: &SecretBytes,
        ttl: Duration,
    ) -> Result<(), KeyringError> {
        let ring = session()?;
        let key = ring
            .add_key(description, secret.expose())
            .map_err(|e| key_error(e, "cache the vault key"))?;
        // The kernel removes the key when the timeout expires. If it cannot be set, the key
        // must not stay behind without one.
        let seconds = usize::try_from(ttl.as_secs()).unwrap_or(usize::MAX).max(1);
        if let Err(e) = key.set_timeout(seconds) {
            let _ = key.invalidate();
            return Err(key_error(e, "set the timeout of the cached vault key"));
        }
        Ok(())
    }

    pub(super) fn cached_vault(description: &str) -> Result<Option<SecretBytes>, KeyringError> {
        let ring = session()?;
        let key = match ring.search(description) {
            Ok(k) => k,
            Err(KeyError::KeyDoesNotExist | KeyError::KeyExpired | KeyError::KeyRevoked) => {
                return Ok(None);
            }
            Err(e) => return Err(key_error(e, "find the cached vault key")),
        };
        match key.read_to_vec() {
            Ok(bytes) => Ok(Some(SecretBytes::new(bytes))),
            Err(KeyError::KeyDoesNotExist | KeyError::KeyExpired | KeyError::KeyRevoked) => {
                Ok(None)
            }
            Err(e) => Err(key_error(e, "read the cached vault key")),
        }
    }

    pub(super) fn drop_vault(description: &str) -> Result<bool, KeyringError> {
        let ring = session()?;
        match ring.search(description) {
            Ok(key) => key
                .invalidate()
                .map(|()| true)
                .map_err(|e| key_error(e, "drop the cached vault key")),
            Err(KeyError::KeyDoesNotExist | KeyError::KeyExpired | KeyError::KeyRevoked) => {
                Ok(false)
            }
            Err(e) => Err(key_error(e, "find the cached vault key")),
        }
    }
}

#[cfg(target_os = "macos")]
mod platform {
    //! The login keychain through `apple-native-keyring-store`. The keychain has no timeouts,
    //! so the cached vault key carries its expiry time and is deleted when read after it.

    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use keyring_core::Entry;
    use keyring_core::api::CredentialStoreApi as _;

    use super::{IDENTITY_USER, KeyringError, SERVICE, core_error};
    use crate::secret::SecretBytes;

    const VAULT_SERVICE: &str = "vars-vault";

    fn entry(service: &str, user: &str) -> Result<Entry, KeyringError> {
        let store = apple_native_keyring_store::keychain::Store::new()
            .map_err(|e| core_error(e, "open the login keychain"))?;
        store
            .build(service, user, None)
            .map_err(|e| core_error(e, "open the keychain entry"))
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    pub(super) fn identity_entry() -> Result<Entry, KeyringError> {
        entry(SERVICE, IDENTITY_USER)
    }

    pub(super) fn cache_vault(
        description: &str,
        secret: &SecretBytes,
        ttl: Duration,
    ) -> Result<(), KeyringError> {
        let mut payload = format!("expires {}\n", now().saturating_add(ttl.as_secs())).into_bytes();
        payload.extend_from_slice(secret.expose());
        let payload = SecretBytes::new(payload);
        entry(VAULT_SERVICE, description)?
            .set_secret(payload.expose())
            .map_err(|e| core_error(e, "cache the vault key"))
    }

    pub(super) fn cached_vault(description: &str) -> Result<Option<SecretBytes>, KeyringError> {
        let e = entry(VAULT_SERVICE, description)?;
        let payload = match e.get_secret() {
            Ok(b) => SecretBytes::new(b),
            Err(keyring_core::Error::NoEntry) => return Ok(None),
            Err(err) => return Err(core_error(err, "read the cached vault key")),
        };
        let bytes = payload.expose();
        let Some(nl) = bytes.iter().position(|b| *b == b'\n') else {
            let _ = e.delete_credential();
            return Ok(None);
        };
        let expires = std::str::from_utf8(&bytes[..nl])
            .ok()
            .and_then(|l| l.strip_prefix("expires "))
            .and_then(|n| n.parse::<u64>().ok());
        match expires {
            Some(t) if t > now() => Ok(Some(SecretBytes::new(bytes[nl + 1..].to_vec()))),
            _ => {
                let _ = e.delete_credential();
                Ok(None)
            }
        }
    }

    pub(super) fn drop_vault(description: &str) -> Result<bool, KeyringError> {
        match entry(VAULT_SERVICE, description)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(core_error(e, "drop the cached vault key")),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod platform {
    use std::time::Duration;

    use super::KeyringError;
    use crate::secret::SecretBytes;

    pub(super) fn identity_entry() -> Result<keyring_core::Entry, KeyringError> {
        Err(KeyringError::Unsupported)
    }
    pub(super) fn cache_vault(_: &str, _: &SecretBytes, _: Duration) -> Result<(), KeyringError> {
        Err(KeyringError::Unsupported)
    }
    pub(super) fn cached_vault(_: &str) -> Result<Option<SecretBytes>, KeyringError> {
        Err(KeyringError::Unsupported)
    }
    pub(super) fn drop_vault(_: &str) -> Result<bool, KeyringError> {
        Err(KeyringError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_entries_are_keyed_by_recipient() {
        assert_eq!(vault_description(" age1abc\n"), "vars-vault:age1abc");
        assert_ne!(vault_description("age1abc"), vault_description("age1abd"));
    }

    #[test]
    fn keyring_errors_never_carry_stored_bytes() {
        let e = core_error(
            keyring_core::Error::BadEncoding(b"AGE-SECRET-KEY-1SENTINEL".to_vec()),
            "read the identity",
        );
        assert!(!e.to_string().contains("SENTINEL"), "{e}");
    }
}
