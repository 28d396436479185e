//! Text that came from the repository or a generator script, made safe to print.
//!
//! Everything in the repository is untrusted (DESIGN §3): a prompt description, a generator or
//! file name in a message, or a script's stderr may carry terminal escapes (`ESC ] 0 ; … BEL`
//! sets the window title, OSC 52 writes the clipboard, CSI sequences move the cursor and can
//! hide or fake lines of a printed plan). [`escape`] turns every control character into a
//! visible escape, so what reaches a terminal or a CI log is exactly what it looks like.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with control characters escaped: `\e` for ESC, `\t`, `\r`, `\n` unless `keep_newlines`,
/// `\x7f` for DEL, `\u{…}` for C1 controls and the Unicode bidi overrides that reorder what a
/// terminal shows. Printable text, including non-ASCII, is unchanged.
pub fn escape_with(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| needs_escape(c) && !(keep_newlines && c == '\n'))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line of untrusted text: every control character escaped, newlines too.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_with(text, false)
}

/// Untrusted multi-line text (a script's stderr): newlines kept, every other control
/// character escaped.
pub fn escape_lines(text: &str) -> Cow<'_, str> {
    escape_with(text, true)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidi embeddings, overrides and isolates: they reorder the rest of the line.
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "machines/cinnabar/ssh-host", "clé ünïcode 🔑"] {
            assert!(matches!(escape(s), Cow::Borrowed(b) if b == s));
        }
    }

    #[test]
    fn terminal_escapes_become_visible() {
        assert_eq!(escape("normal\x1b]0;title\x07"), "normal\\e]0;title\\x07");
        assert_eq!(escape("a\x1b[2K\rb"), "a\\e[2K\\rb");
        assert_eq!(escape("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(escape("bidi\u{202e}txt"), "bidi\\u{202e}txt");
        assert_eq!(escape("one\ntwo\x7f"), "one\\ntwo\\x7f");
        assert_eq!(escape_lines("one\ntwo\x1b[1A"), "one\ntwo\\e[1A");
    }

    proptest::proptest! {
        #[test]
        fn escaped_text_has_no_control_characters(s in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a-z]*") {
            let e = escape(&s);
            proptest::prop_assert!(!e.chars().any(needs_escape), "{e:?}");
            let l = escape_lines(&s);
            proptest::prop_assert!(!l.chars().any(|c| needs_escape(c) && c != '\n'), "{l:?}");
        }
    }
}
