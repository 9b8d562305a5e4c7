//! [`Secret`]: a setting that is a credential, read from the file and shown nowhere.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// What a secret is shown as.
pub(crate) const REDACTED: &str = "<redacted>";

/// A setting that is a credential (a session secret, the live page's token, a header value
/// sent to a collector): read from the file as text, and shown as `<redacted>` by
/// `--print-config`, `--print-stack`, the live page and `Debug`, whatever its key is named.
///
/// ```
/// use callnext::config::Secret;
///
/// let token: Secret = serde_json::from_str("\"hunter2-hunter2-hunter2\"").unwrap();
/// assert_eq!(token.expose(), "hunter2-hunter2-hunter2");
/// assert_eq!(format!("{token:?}"), "Secret(\"<redacted>\")");
/// assert_eq!(serde_json::to_string(&token).unwrap(), "\"<redacted>\"");
/// // An empty one says it is empty.
/// assert_eq!(serde_json::to_string(&callnext::config::Secret::default()).unwrap(), "\"\"");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// A secret of `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the code that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &str {
        if self.0.is_empty() {
            ""
        } else {
            REDACTED
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.shown()).finish()
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}
