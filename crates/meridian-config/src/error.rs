//! Config errors that point at the exact place in the file and say how to fix it.

use std::fmt;
use std::ops::Range;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it (or `<embedded default>`).
    pub file: String,
    /// 1-based line and column of the offending key or value.
    pub line: usize,
    pub column: usize,
    /// Dotted path of the key, such as `region[1].azs`.
    pub key: String,
    pub problem: String,
    pub fix: String,
    /// The source line, for the excerpt under the message.
    pub source_line: String,
    /// How many characters of `source_line` to underline from `column`.
    pub width: usize,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.problem)?;
        writeln!(f, "  --> {}:{}:{}", self.file, self.line, self.column)?;
        if !self.source_line.is_empty() {
            let gutter = self.line.to_string().len();
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", self.line, self.source_line)?;
            writeln!(
                f,
                "{:gutter$} | {}{}",
                "",
                " ".repeat(self.column.saturating_sub(1)),
                "^".repeat(self.width.max(1))
            )?;
        }
        if !self.key.is_empty() {
            writeln!(f, "  = key: {}", self.key)?;
        }
        write!(f, "  = fix: {}", self.fix)
    }
}

/// Every problem found in one config, in file order.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}\n")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} error{} in the config",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// Turns byte spans into positions and collects errors while a config is read.
pub(crate) struct Diagnostics<'a> {
    pub file: &'a str,
    pub src: &'a str,
    pub errors: Vec<ConfigError>,
}

impl<'a> Diagnostics<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        Diagnostics {
            file,
            src,
            errors: Vec::new(),
        }
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        key: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        let start = span.start.min(self.src.len());
        let line_start = self.src[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = self.src[start..]
            .find('\n')
            .map(|i| start + i)
            .unwrap_or(self.src.len());
        let line = self.src[..start].matches('\n').count() + 1;
        let column = self.src[line_start..start].chars().count() + 1;
        let source_line = self.src[line_start..line_end]
            .trim_end_matches('\r')
            .to_owned();
        let end = span.end.clamp(start, line_end);
        let width = self.src[start..end].chars().count();
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
            source_line,
            width,
        });
    }

    pub fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            self.errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(self.errors))
        }
    }
}
