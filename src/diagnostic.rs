//! Positioned errors about declaration files: `file:line:column: message`, the offending line
//! with a caret under the column, and a hint saying what to do. Used for YAML syntax errors and
//! for every semantic check in [`crate::model`].

use std::fmt;
use std::path::PathBuf;

/// One problem at one place in a YAML file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as given (relative paths stay relative for readable messages).
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The source line the position points into, if known.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at `line`/`column` of `file`, whose text is `source`.
    pub fn at(
        file: impl Into<PathBuf>,
        source: &str,
        line: u64,
        column: u64,
        message: impl Into<String>,
    ) -> Self {
        let source_line = (line > 0)
            .then(|| source.lines().nth(line as usize - 1).map(str::to_owned))
            .flatten();
        Diagnostic {
            file: file.into(),
            line,
            column,
            message: message.into(),
            hint: None,
            source_line,
        }
    }

    /// Add a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The file's lines and names come from the repository: escape terminal controls.
        write!(
            f,
            "{}",
            crate::text::escape(&self.file.display().to_string())
        )?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", crate::text::escape_lines(&self.message))?;
        if let Some(text) = &self.source_line {
            let text = crate::text::escape(text);
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            write!(f, "\n {pad} |\n {gutter} | {text}")?;
            if self.column > 0 {
                let caret_pad: String = text
                    .chars()
                    .take(self.column as usize - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                write!(f, "\n {pad} | {caret_pad}^")?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Several diagnostics, reported together so one run shows every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_snippet_and_hint() {
        let src = "version: 1\nmachines:\n  ../x: {}\n";
        let d = Diagnostic::at("vars.yaml", src, 3, 3, "bad name").hint("use letters");
        assert_eq!(
            d.to_string(),
            "vars.yaml:3:3: bad name\n   |\n 3 |   ../x: {}\n   |   ^\n  hint: use letters"
        );
    }

    #[test]
    fn terminal_escapes_in_the_source_are_shown_not_sent() {
        let src = "version: 1\nx: \"\x1b]0;owned\x07\"\n";
        let d = Diagnostic::at("vars.yaml", src, 2, 1, "unknown field `\x1b[2J`");
        let text = d.to_string();
        assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
        assert!(text.contains("\\e]0;owned\\x07"), "{text}");
    }
}
