//! Policies (`"100/minute"` with a burst) and the headers that report them.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::gcra::{Decision, Rate};
use crate::ConfigError;

/// The largest `interval × burst` in microseconds: Lua's doubles count exactly to 2^53, and
/// the script adds it to an epoch in microseconds (about 2^51).
const MAX_CAPACITY_US: u64 = 1 << 51;

/// One policy of a limiter, as built.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) name: String,
    pub(crate) rate: Rate,
    pub(crate) quota: u64,
    pub(crate) window_s: u64,
}

/// Reads `"100/minute"`, `"10/s"`, `"5/30s"`, `"1000/1h"`.
pub(crate) fn parse_limit(text: &str) -> Result<(u64, Duration), ConfigError> {
    let wrong = || {
        ConfigError::invalid(
            "limit",
            format!(
                "expected a count and a window such as \"100/minute\", \"10/s\" or \"5/30s\", got `{text}`"
            ),
        )
    };
    let (count, window) = text.split_once('/').ok_or_else(wrong)?;
    let count: u64 = count.trim().parse().map_err(|_| wrong())?;
    let window = window.trim();
    let window = match window {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86_400),
        other => humantime::parse_duration(other).map_err(|_| wrong())?,
    };
    if count == 0 {
        return Err(ConfigError::invalid(
            "limit",
            format!("`{text}` allows no request; the count must be at least 1"),
        ));
    }
    if window.as_micros() < u128::from(count) {
        return Err(ConfigError::invalid(
            "limit",
            format!("`{text}` is more than one request per microsecond"),
        ));
    }
    Ok((count, window))
}

impl Policy {
    pub(crate) fn new(
        limit: &str,
        burst: Option<u64>,
        name: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let (quota, window) = parse_limit(limit)?;
        let burst = burst.unwrap_or(quota);
        if burst == 0 {
            return Err(ConfigError::invalid("burst", "must be at least 1"));
        }
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let interval_us = window_us / quota;
        if interval_us.saturating_mul(burst) > MAX_CAPACITY_US {
            return Err(ConfigError::invalid(
                "burst",
                format!(
                    "{burst} for `{limit}` reaches too far ahead (interval × burst over 71 years)"
                ),
            ));
        }
        let name = match name {
            Some(name) => {
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                {
                    return Err(ConfigError::invalid(
                        "name",
                        format!("`{name}`: a policy name is letters, digits, `-`, `_` and `.`"),
                    ));
                }
                name.to_owned()
            }
            None => format!(
                "{quota}-in-{}",
                humantime::format_duration(window)
                    .to_string()
                    .replace(' ', "")
            ),
        };
        Ok(Self {
            name,
            rate: Rate { interval_us, burst },
            quota,
            window_s: window.as_secs_f64().ceil() as u64,
        })
    }
}

/// Which rate-limit headers a response gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Headers {
    /// The IETF draft's `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=42;t=18`
    /// (the default).
    #[default]
    Draft,
    /// The older draft's `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and
    /// `RateLimit-Policy: 100;w=60`.
    Legacy,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds from now).
    X,
    /// None (a 429 still has `Retry-After`).
    None,
}

impl Headers {
    /// The names this mode writes, for CORS to expose.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Self::Draft => &["ratelimit", "ratelimit-policy", "retry-after"],
            Self::Legacy => &[
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
                "ratelimit-policy",
                "retry-after",
            ],
            Self::X => &[
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset",
                "retry-after",
            ],
            Self::None => &["retry-after"],
        }
    }
}

/// The headers' fixed parts, made once when the limiter is built.
#[derive(Debug)]
pub(crate) struct Rendered {
    mode: Headers,
    policy: Option<HeaderValue>,
    quotas: Vec<HeaderValue>,
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

impl Rendered {
    pub(crate) fn new(mode: Headers, policies: &[Policy]) -> Self {
        let list = |one: &dyn Fn(&Policy) -> String| {
            let all: Vec<String> = policies.iter().map(one).collect();
            HeaderValue::from_str(&all.join(", ")).ok()
        };
        let policy = match mode {
            Headers::Draft => list(&|p| format!("\"{}\";q={};w={}", p.name, p.quota, p.window_s)),
            Headers::Legacy => list(&|p| format!("{};w={}", p.quota, p.window_s)),
            Headers::X | Headers::None => None,
        };
        Self {
            mode,
            policy,
            quotas: policies
                .iter()
                .map(|p| HeaderValue::from(p.quota))
                .collect(),
        }
    }

    /// Writes the headers of `decision` (the policy with the lowest remaining).
    pub(crate) fn write(&self, headers: &mut HeaderMap, decision: &Decision, policies: &[Policy]) {
        let (i, outcome) = decision.tightest();
        // `t` names the same instant as `Retry-After` when the request was refused.
        let reset_us = if decision.allowed {
            outcome.reset_us
        } else {
            decision.retry_us()
        };
        let reset = reset_us.div_ceil(1_000_000);
        let remaining = if decision.allowed {
            outcome.remaining
        } else {
            0
        };
        match self.mode {
            Headers::Draft => {
                // `"name";r=remaining;t=reset` written straight into the value's own allocation:
                // no formatter and no second copy on every limited request.
                let name = policies[i].name.as_bytes();
                let mut int = itoa::Buffer::new();
                let mut value = Vec::with_capacity(name.len() + 48);
                value.push(b'"');
                value.extend_from_slice(name);
                value.extend_from_slice(b"\";r=");
                value.extend_from_slice(int.format(remaining).as_bytes());
                value.extend_from_slice(b";t=");
                value.extend_from_slice(int.format(reset).as_bytes());
                if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                    headers.insert(RATELIMIT, v);
                }
            }
            Headers::Legacy => {
                headers.insert("ratelimit-limit", self.quotas[i].clone());
                headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
                headers.insert("ratelimit-reset", HeaderValue::from(reset));
            }
            Headers::X => {
                headers.insert("x-ratelimit-limit", self.quotas[i].clone());
                headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
                headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
            }
            Headers::None => {}
        }
        if let Some(policy) = &self.policy {
            headers.insert(RATELIMIT_POLICY, policy.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_or_refused() {
        let p = Policy::new("100/minute", Some(20), None).unwrap();
        assert_eq!((p.quota, p.window_s, p.rate.burst), (100, 60, 20));
        assert_eq!(p.rate.interval_us, 600_000);
        assert_eq!(p.name, "100-in-1m");
        assert_eq!(Policy::new("5/30s", None, None).unwrap().name, "5-in-30s");
        assert_eq!(Policy::new("10/s", None, None).unwrap().rate.burst, 10);
        for (text, message) in [
            ("100", "invalid `limit`: expected a count and a window such as \"100/minute\", \"10/s\" or \"5/30s\", got `100`"),
            ("ten/s", "invalid `limit`: expected a count and a window such as \"100/minute\", \"10/s\" or \"5/30s\", got `ten/s`"),
            ("0/s", "invalid `limit`: `0/s` allows no request; the count must be at least 1"),
            ("10/fortnight", "invalid `limit`: expected a count and a window such as \"100/minute\", \"10/s\" or \"5/30s\", got `10/fortnight`"),
        ] {
            assert_eq!(Policy::new(text, None, None).unwrap_err().to_string(), message);
        }
        assert_eq!(
            Policy::new("1/s", Some(0), None).unwrap_err().to_string(),
            "invalid `burst`: must be at least 1"
        );
        assert_eq!(
            Policy::new("1/s", None, Some("a b"))
                .unwrap_err()
                .to_string(),
            "invalid `name`: `a b`: a policy name is letters, digits, `-`, `_` and `.`"
        );
    }
}
