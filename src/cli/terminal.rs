//! The terminal as the library's [`Interaction`]: age plugins' messages go to stderr, their
//! questions and identity passphrases are asked on the terminal. Installed once at start-up
//! (`cli::main`); the library itself never reads stdin (issue 9).

use std::io::{IsTerminal as _, Write as _};

use vars::crypto::Interaction;
use vars::secret::SecretBytes;

/// Asks on the terminal; answers nothing when standard input is not one (CI, pipes), so that
/// a passphrase-protected identity fails with a hint instead of waiting.
pub struct Terminal;

impl Terminal {
    fn interactive() -> bool {
        std::io::stdin().is_terminal()
    }

    fn read_line() -> Option<String> {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok()?;
        Some(line)
    }
}

impl Interaction for Terminal {
    fn message(&self, message: &str) {
        let _ = writeln!(std::io::stderr(), "{}", vars::text::escape_lines(message));
    }

    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        if !Self::interactive() {
            return None;
        }
        let no = no
            .map(|n| format!("/{}", vars::text::escape(n)))
            .unwrap_or_default();
        let yes_shown = vars::text::escape(yes);
        let _ = write!(
            std::io::stderr(),
            "{} [{yes_shown}{no}] ",
            vars::text::escape(message)
        );
        let line = Self::read_line()?;
        let answer = line.trim();
        Some(answer.eq_ignore_ascii_case(yes) || answer.eq_ignore_ascii_case("y"))
    }

    fn request_public(&self, description: &str) -> Option<String> {
        if !Self::interactive() {
            return None;
        }
        let _ = write!(std::io::stderr(), "{}: ", vars::text::escape(description));
        Some(Self::read_line()?.trim_end().to_owned())
    }

    fn request_secret(&self, description: &str) -> Option<SecretBytes> {
        if !Self::interactive() {
            return None;
        }
        rpassword::prompt_password(format!("{}: ", vars::text::escape(description)))
            .ok()
            .map(|s| SecretBytes::new(s.into_bytes()))
    }
}
