//! One access log record and its three line formats.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The line format of the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Format {
    /// One JSON object per line (the default).
    #[default]
    Json,
    /// nginx/Apache `combined`: `common` plus referer and user agent.
    Combined,
    /// The Common Log Format.
    Common,
}

/// What is known of a request when it starts.
#[derive(Debug, Serialize)]
pub(super) struct Record {
    pub(super) time: String,
    pub(super) client_ip: Option<IpAddr>,
    pub(super) method: String,
    pub(super) route: Option<String>,
    pub(super) path: String,
    pub(super) query: Option<String>,
    pub(super) protocol: &'static str,
    pub(super) status: u16,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) ttfb_ms: Option<f64>,
    pub(super) duration_ms: f64,
    pub(super) request_id: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) referer: Option<String>,
    pub(super) answered_by: Option<String>,
    #[serde(skip)]
    pub(super) at: SystemTime,
}

pub(super) fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub(super) fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The query with the values of these parameters replaced by `REDACTED`.
pub(super) fn redact_query(query: &str, redact: &[String]) -> String {
    query
        .split('&')
        .map(|pair| {
            let (key, _) = pair.split_once('=').unwrap_or((pair, ""));
            if redact.iter().any(|r| r.eq_ignore_ascii_case(key)) {
                format!("{key}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl Record {
    /// The line, without its newline.
    pub(super) fn line(&self, format: Format) -> String {
        match format {
            Format::Json => serde_json::to_string(self).unwrap_or_default(),
            Format::Common | Format::Combined => {
                let mut line = String::with_capacity(160);
                let client = self
                    .client_ip
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                let target = match &self.query {
                    Some(q) => format!("{}?{q}", self.path),
                    None => self.path.clone(),
                };
                let bytes = if self.bytes_out == 0 {
                    "-".to_owned()
                } else {
                    self.bytes_out.to_string()
                };
                let _ = write!(
                    line,
                    "{client} - - [{}] \"{} {} {}\" {} {bytes}",
                    clf_time(self.at),
                    self.method,
                    quoted(&target),
                    self.protocol,
                    self.status
                );
                if format == Format::Combined {
                    let _ = write!(
                        line,
                        " \"{}\" \"{}\"",
                        quoted(self.referer.as_deref().unwrap_or("-")),
                        quoted(self.user_agent.as_deref().unwrap_or("-"))
                    );
                }
                line
            }
        }
    }
}

/// A value inside double quotes of a text log line: quotes, backslashes and control bytes
/// escaped, so a client cannot forge fields or lines.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `10/Oct/2000:13:55:36 +0000`, in UTC.
fn clf_time(at: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_quoting() {
        let at = UNIX_EPOCH + Duration::from_secs(971_186_136); // 2000-10-10T13:55:36Z
        assert_eq!(clf_time(at), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(
            clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "29/Feb/2000:00:00:00 +0000"
        );
        assert_eq!(quoted("a\"b\\c\nd"), "a\\\"b\\\\c\\x0ad");
    }

    #[test]
    fn secrets_in_queries_are_redacted() {
        let redact = vec!["token".to_owned(), "api_key".to_owned()];
        assert_eq!(
            redact_query("q=shoes&token=abc&API_KEY=x&flag", &redact),
            "q=shoes&token=REDACTED&API_KEY=REDACTED&flag"
        );
    }
}
