//! Durations and sizes as people write them: `"30s"`, `"1m 30s"`, `"10ms"`, `"1MB"`, `"64KiB"`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration in the configuration file: a string with units (`"30s"`, `"10ms"`, `"1h 30m"`,
/// parsed by `humantime`), `"0"` or `"off"` for zero.
///
/// ```
/// use callnext::config::Duration;
///
/// assert_eq!("1m 30s".parse::<Duration>().unwrap().get(), std::time::Duration::from_secs(90));
/// assert_eq!("off".parse::<Duration>().unwrap().get(), std::time::Duration::ZERO);
/// assert_eq!(
///     "30".parse::<Duration>().unwrap_err(),
///     "expected a duration with a unit such as \"30s\" or \"10ms\", got \"30\""
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// This many seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// This many milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// The duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// Parses a command-line value: a bare number is `unit`s (the flags' historic meaning),
    /// anything else as in the file.
    ///
    /// # Errors
    ///
    /// As [`FromStr`].
    pub fn parse_flag(value: &str, unit: std::time::Duration) -> Result<Self, String> {
        match value.trim().parse::<u32>() {
            Ok(n) => Ok(Self(unit * n)),
            Err(_) => value.parse(),
        }
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let trimmed = s.trim();
        if trimmed == "0" || trimmed.eq_ignore_ascii_case("off") {
            return Ok(Self(std::time::Duration::ZERO));
        }
        humantime::parse_duration(trimmed).map(Self).map_err(|_| {
            format!("expected a duration with a unit such as \"30s\" or \"10ms\", got {s:?}")
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        humantime::format_duration(self.0).fmt(f)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit such as \"30s\" or \"10ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A size in bytes in the configuration file: `"1MB"`, `"64KiB"`, `"512"` (parsed by
/// `bytesize`), or a whole number of bytes.
///
/// ```
/// use callnext::config::Size;
///
/// assert_eq!("1MB".parse::<Size>().unwrap().bytes(), 1_000_000);
/// assert_eq!("64KiB".parse::<Size>().unwrap().bytes(), 65_536);
/// assert!("lots".parse::<Size>().is_err());
/// assert_eq!(Size::from_bytes(65_536).to_string(), "64KiB");
/// assert_eq!(Size::from_bytes(1_500_000).to_string(), "1500kB");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(u64);

impl Size {
    /// This many bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        bytesize::ByteSize::from_str(s.trim())
            .map(|b| Self(b.as_u64()))
            .map_err(|_| format!("expected a size such as \"1MB\" or \"64KiB\", got {s:?}"))
    }
}

/// Exact, so that it parses back to the same size: the largest unit that divides it.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 6] = [
            (1 << 30, "GiB"),
            (1_000_000_000, "GB"),
            (1 << 20, "MiB"),
            (1_000_000, "MB"),
            (1 << 10, "KiB"),
            (1_000, "kB"),
        ];
        match UNITS
            .iter()
            .find(|(unit, _)| self.0 != 0 && self.0 % unit == 0)
        {
            Some((unit, name)) => write!(f, "{}{name}", self.0 / unit),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1MB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("a size cannot be negative, got {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
