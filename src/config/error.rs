//! [`FileError`]: a configuration mistake with its file, line and dotted key, in one line.

use std::fmt;

/// A mistake in the configuration: the file, the line (when known), the key and what was
/// expected, on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub(super) origin: String,
    pub(super) line: Option<usize>,
    pub(super) key: Option<String>,
    pub(super) message: String,
}

impl FileError {
    /// The dotted key the mistake is at (`server.port`, `middleware.cors.max_age`).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The line of the file (from 1), when known.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// What is wrong, without the file, line and key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// Where a configuration came from, for error messages.
#[derive(Debug, Clone, Default)]
pub(super) struct Source {
    pub(super) origin: String,
    pub(super) text: String,
}

impl Source {
    /// An error at `key` (dotted), with the line of that key in the text when it is there.
    pub(super) fn error(&self, key: &str, message: impl fmt::Display) -> FileError {
        FileError {
            origin: self.origin.clone(),
            line: self.line_of(key),
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: one_line(&message.to_string()),
        }
    }

    pub(super) fn line_at(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The line of the key at this dotted path, or of the deepest table of it that is found.
    pub(super) fn line_of(&self, key: &str) -> Option<usize> {
        let doc = toml::de::DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let mut line = None;
        for part in key.split('.') {
            let (k, v) = table.iter().find(|(k, _)| k.get_ref() == part)?;
            line = Some(self.line_at(k.span().start));
            match v.get_ref() {
                toml::de::DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        line
    }
}

pub(super) fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A TOML or type error as a [`FileError`]: toml's span gives the line.
pub(super) fn toml_error(source: &Source, key: &str, err: &toml::de::Error) -> FileError {
    let line = err
        .span()
        .map(|span| source.line_at(span.start))
        .or_else(|| source.line_of(key));
    FileError {
        origin: source.origin.clone(),
        line,
        key: (!key.is_empty() && key != ".").then(|| key.to_owned()),
        message: one_line(err.message()),
    }
}
