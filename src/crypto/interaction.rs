//! How the crypto code talks to a person: messages of age plugins ("touch your YubiKey"), their
//! questions, and passphrases of protected identity files (issue 9: the library never reads the
//! terminal). The CLI supplies an [`Interaction`] once, with [`set_interaction`]; until it does,
//! [`NoInteraction`] answers that nobody can be asked, so a library user without a terminal gets
//! "no passphrase" errors instead of a process blocked on stdin.
//!
//! Neighbours: [`super::identities`] asks for passphrases and hands the interaction to the
//! plugin identities it loads; [`super::recipient`] hands it to plugin recipients.

use std::sync::{Arc, PoisonError, RwLock};

use crate::secret::SecretBytes;

/// Someone to show messages to and ask questions of, supplied by the program using the library
/// (the `vars` binary asks on its terminal). Every question may go unanswered (`None`): there is
/// no terminal, or the person declined.
pub trait Interaction: Send + Sync {
    /// Show a message, e.g. an age plugin asking to insert or touch a hardware key.
    fn message(&self, message: &str);
    /// Ask a yes/no question; `yes` (and `no`, when given) label the answers.
    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool>;
    /// Ask for a value that is not secret (an age plugin may ask which key to use).
    fn request_public(&self, description: &str) -> Option<String>;
    /// Ask for a passphrase or PIN without echoing it; `description` says for what.
    fn request_secret(&self, description: &str) -> Option<SecretBytes>;
}

/// An [`Interaction`] with nobody at the other end: messages are dropped and every question goes
/// unanswered. What the library uses until a program installs its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInteraction;

impl Interaction for NoInteraction {
    fn message(&self, _: &str) {}
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public(&self, _: &str) -> Option<String> {
        None
    }
    fn request_secret(&self, _: &str) -> Option<SecretBytes> {
        None
    }
}

static INSTALLED: RwLock<Option<Arc<dyn Interaction>>> = RwLock::new(None);

/// Install the interaction every later identity load and plugin call uses (the `vars` binary
/// installs its terminal at start-up). Replaces an earlier one.
pub fn set_interaction(interaction: Arc<dyn Interaction>) {
    *INSTALLED.write().unwrap_or_else(PoisonError::into_inner) = Some(interaction);
}

/// The installed interaction, or [`NoInteraction`].
pub fn interaction() -> Arc<dyn Interaction> {
    INSTALLED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_else(|| Arc::new(NoInteraction))
}

/// age's callbacks, answered through an [`Interaction`].
#[derive(Clone)]
pub(super) struct Callbacks(pub(super) Arc<dyn Interaction>);

impl age::Callbacks for Callbacks {
    fn display_message(&self, message: &str) {
        self.0.message(message);
    }
    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        self.0.confirm(message, yes, no)
    }
    fn request_public_string(&self, description: &str) -> Option<String> {
        self.0.request_public(description)
    }
    fn request_passphrase(&self, description: &str) -> Option<age::secrecy::SecretString> {
        let secret = self.0.request_secret(description)?;
        let text = std::str::from_utf8(secret.expose()).ok()?;
        Some(age::secrecy::SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_answers_until_an_interaction_is_installed() {
        let none = NoInteraction;
        assert!(none.request_secret("pin").is_none());
        assert!(none.confirm("sure?", "yes", Some("no")).is_none());
        assert!(none.request_public("slot").is_none());
    }
}
