//! Request values as a log line may carry them: characters that could forge or hide log
//! content escaped, and the length bounded.

use std::fmt::{self, Write as _};

/// The most bytes of one request value that a log line carries; the rest is replaced by a
/// marker saying how many bytes were left out.
pub const MAX_LOGGED_BYTES: usize = 1024;

/// Whether `c` would let a client forge or hide what a log shows: control characters (C0,
/// DEL, C1 such as U+0085 NEL and U+009B CSI), line and paragraph separators, bidirectional
/// overrides and isolates (U+202E...), zero-width and other invisible formatting characters.
pub(crate) fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// A request value (a path, a header, an id) made safe for a text log line: hostile characters
/// written as `\u{202e}`, quotes and backslashes escaped (so it cannot close the quotes it
/// stands in), bytes that are not UTF-8 replaced, and at most [`MAX_LOGGED_BYTES`] of it
/// shown, followed by `...[N more bytes]`.
///
/// ```
/// use callnext::Printable;
///
/// let path = "/a\u{202e}b\"c\n";
/// assert_eq!(Printable::new(path).to_string(), r#"/a\u{202e}b\"c\u{a}"#);
/// let long = "x".repeat(5000);
/// assert!(Printable::new(&long).to_string().ends_with("...[3976 more bytes]"));
/// tracing::info!(path = %Printable::new(path), "request received");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Printable<'a>(&'a [u8]);

impl<'a> Printable<'a> {
    /// The value `value` (text or raw header bytes).
    pub fn new(value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        Self(value.as_ref())
    }
}

/// `value` cut to at most `max` bytes at a character boundary, and how many bytes were cut.
pub(crate) fn bounded(value: &str, max: usize) -> (&str, usize) {
    if value.len() <= max {
        return (value, 0);
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    (&value[..end], value.len() - end)
}

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(self.0);
        let (shown, cut) = bounded(&text, MAX_LOGGED_BYTES);
        for c in shown.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if is_hostile(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        if cut > 0 {
            write!(f, "...[{cut} more bytes]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_characters_are_escaped_and_long_values_cut() {
        for (c, shown) in [
            ('\u{85}', "\\u{85}"),
            ('\u{9b}', "\\u{9b}"),
            ('\u{2028}', "\\u{2028}"),
            ('\u{202e}', "\\u{202e}"),
            ('\u{7f}', "\\u{7f}"),
            ('\r', "\\u{d}"),
        ] {
            assert_eq!(Printable::new(&c.to_string()).to_string(), shown);
        }
        assert_eq!(Printable::new("héllo/ü").to_string(), "héllo/ü");
        assert_eq!(Printable::new(b"a\xffb").to_string(), "a\u{fffd}b");
        // A multi-byte character at the bound is not split.
        let value = format!("{}é", "a".repeat(MAX_LOGGED_BYTES - 1));
        let shown = Printable::new(&value).to_string();
        assert!(shown.ends_with("a...[2 more bytes]"), "{shown}");
    }
}
