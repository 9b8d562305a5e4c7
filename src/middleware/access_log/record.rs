//! One access log record and its three line formats.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::printable::{bounded, is_hostile, MAX_LOGGED_BYTES};

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

/// What is known of a request, kept as cheap clones (shared bytes) until the line is written.
#[derive(Debug)]
pub(super) struct Record {
    pub(super) client_ip: Option<IpAddr>,
    pub(super) method: http::Method,
    pub(super) route: Option<axum::extract::MatchedPath>,
    pub(super) uri: http::Uri,
    pub(super) redact: bool,
    pub(super) protocol: &'static str,
    pub(super) status: u16,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    /// Time to the response's head, in microseconds.
    pub(super) ttfb_us: Option<u64>,
    /// Time to the body's end (or the client's leaving), in microseconds.
    pub(super) duration_us: u64,
    pub(super) request_id: Option<http::HeaderValue>,
    pub(super) user_agent: Option<http::HeaderValue>,
    pub(super) referer: Option<http::HeaderValue>,
    pub(super) answered_by: Option<crate::AnsweredBy>,
    /// Who the request was found to be from (by [`Auth`](crate::middleware::Auth), or any
    /// middleware that puts a [`UserId`](crate::UserId) on the response).
    pub(super) user: Option<crate::UserId>,
    /// The request's trace, when the stack exports traces.
    pub(super) trace_id: Option<Box<str>>,
    pub(super) at: SystemTime,
}

impl Record {
    /// The authenticated subject, if there is a non-empty one.
    fn user(&self) -> Option<&str> {
        self.user
            .as_ref()
            .map(crate::UserId::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A duration in whole microseconds, rounded.
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().saturating_add(500) / 1000).unwrap_or(u64::MAX)
}

/// Microseconds as milliseconds with at most three decimals, as the shortest float would be
/// written (`12.5`, `3.0`, `0.042`): by integer arithmetic, a tenth of a float formatter's cost
/// (callgrind, `bench/instructions.py batteries`).
fn push_millis(line: &mut String, us: u64, int: &mut itoa::Buffer) {
    line.push_str(int.format(us / 1000));
    line.push('.');
    let mut fraction = us % 1000;
    if fraction == 0 {
        line.push('0');
        return;
    }
    let mut width = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        width -= 1;
    }
    let digits = int.format(fraction);
    for _ in digits.len()..width {
        line.push('0');
    }
    line.push_str(digits);
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

/// The query with the values of secret parameters replaced by `REDACTED`: those named in
/// `redact`, and any whose name ends like a credential's (`_token`, `_secret`, `password`,
/// `api_key`). Names are compared as an application reads them: percent-decoded, `+` as a
/// space, a trailing `[]` or `[index]` dropped, case and `-`/`_` ignored; pairs are separated
/// by `&` or `;`.
pub(super) fn redact_query(query: &str, redact: &[String]) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        let pair = &rest[..end];
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !value.is_empty() && is_secret_name(key, redact) {
            out.push_str(key);
            out.push_str("=REDACTED");
        } else {
            out.push_str(pair);
        }
        match rest[end..].chars().next() {
            Some(separator) => {
                out.push(separator);
                rest = &rest[end + 1..];
            }
            None => return out,
        }
    }
}

/// Whether a query parameter's name names a secret (see [`redact_query`]).
fn is_secret_name(raw: &str, redact: &[String]) -> bool {
    let key = normalized_name(raw);
    redact.iter().any(|r| normalized_name(r) == key)
        || [
            "_token",
            "_secret",
            "password",
            "api_key",
            "apikey",
            "_sig",
            "signature",
        ]
        .iter()
        .any(|end| key.ends_with(end))
}

/// A parameter name as compared: percent-decoded, `+` as a space, lowercase, `-` as `_`,
/// without a trailing `[...]`.
fn normalized_name(raw: &str) -> String {
    let decoded: String = form_urlencoded::parse(format!("{raw}=").as_bytes())
        .next()
        .map(|(k, _)| k.into_owned())
        .unwrap_or_default();
    let base = match decoded
        .strip_suffix(']')
        .and_then(|k| k.rfind('[').map(|at| &k[..at]))
    {
        Some(base) => base.to_owned(),
        None => decoded,
    };
    base.trim().to_ascii_lowercase().replace('-', "_")
}

impl Record {
    /// The query as logged: secret parameters' values redacted.
    fn query(&self, redact: &[String]) -> Option<String> {
        let query = self.uri.query()?;
        Some(if self.redact {
            redact_query(query, redact)
        } else {
            query.to_owned()
        })
    }

    /// The line, without its newline.
    ///
    /// JSON is written by hand into one buffer (no intermediate strings, no serializer):
    /// the record costs about half the instructions that building it with serde did
    /// (`python3 bench/instructions.py batteries`).
    pub(super) fn line(&self, format: Format, redact: &[String]) -> String {
        let query = self.query(redact);
        let mut line = String::with_capacity(320);
        match format {
            Format::Json => {
                line.push_str("{\"time\":\"");
                rfc3339(&mut line, self.at);
                line.push_str("\",\"client_ip\":");
                match self.client_ip {
                    Some(ip) => {
                        line.push('"');
                        line.push_str(crate::client_ip::AddressText::new(ip).as_str());
                        line.push('"');
                    }
                    None => line.push_str("null"),
                }
                line.push_str(",\"method\":");
                json_str(&mut line, Some(self.method.as_str().as_bytes()));
                line.push_str(",\"route\":");
                json_str(
                    &mut line,
                    self.route.as_ref().map(|r| r.as_str().as_bytes()),
                );
                line.push_str(",\"path\":");
                json_str(&mut line, Some(self.uri.path().as_bytes()));
                line.push_str(",\"query\":");
                json_str(&mut line, query.as_deref().map(str::as_bytes));
                // Numbers by itoa: the formatting machinery was a third of a record's cost
                // (callgrind, bench/sinks.sh MODE=instructions).
                let mut int = itoa::Buffer::new();
                line.push_str(",\"protocol\":\"");
                line.push_str(self.protocol);
                line.push_str("\",\"status\":");
                line.push_str(int.format(self.status));
                line.push_str(",\"bytes_in\":");
                line.push_str(int.format(self.bytes_in));
                line.push_str(",\"bytes_out\":");
                line.push_str(int.format(self.bytes_out));
                line.push_str(",\"ttfb_ms\":");
                match self.ttfb_us {
                    Some(us) => push_millis(&mut line, us, &mut int),
                    None => line.push_str("null"),
                }
                line.push_str(",\"duration_ms\":");
                push_millis(&mut line, self.duration_us, &mut int);
                line.push_str(",\"request_id\":");
                json_str(
                    &mut line,
                    self.request_id.as_ref().map(http::HeaderValue::as_bytes),
                );
                line.push_str(",\"user_agent\":");
                json_str(
                    &mut line,
                    self.user_agent.as_ref().map(http::HeaderValue::as_bytes),
                );
                line.push_str(",\"referer\":");
                json_str(
                    &mut line,
                    self.referer.as_ref().map(http::HeaderValue::as_bytes),
                );
                line.push_str(",\"answered_by\":");
                json_str(
                    &mut line,
                    self.answered_by.as_ref().map(|a| a.name().as_bytes()),
                );
                line.push_str(",\"user\":");
                json_str(&mut line, self.user().map(str::as_bytes));
                if let Some(trace_id) = &self.trace_id {
                    line.push_str(",\"trace_id\":");
                    json_str(&mut line, Some(trace_id.as_bytes()));
                }
                line.push('}');
            }
            Format::Common | Format::Combined => {
                let client = self
                    .client_ip
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                let target = match &query {
                    Some(q) => format!("{}?{q}", self.uri.path()),
                    None => self.uri.path().to_owned(),
                };
                let bytes = if self.bytes_out == 0 {
                    "-".to_owned()
                } else {
                    self.bytes_out.to_string()
                };
                // The remote user field is one word: escaped, spaces as `%20`.
                let user = self
                    .user()
                    .map_or_else(|| "-".to_owned(), |u| quoted(u).replace(' ', "%20"));
                let _ = write!(
                    line,
                    "{client} - {user} [{}] \"{} {} {}\" {} {bytes}",
                    clf_time(self.at),
                    quoted(self.method.as_str()),
                    quoted(&target),
                    self.protocol,
                    self.status
                );
                if format == Format::Combined {
                    let text = |v: &Option<http::HeaderValue>| {
                        v.as_ref().map_or_else(
                            || "-".to_owned(),
                            |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    };
                    let _ = write!(
                        line,
                        " \"{}\" \"{}\"",
                        quoted(&text(&self.referer)),
                        quoted(&text(&self.user_agent))
                    );
                }
            }
        }
        line
    }
}

/// A JSON string (or `null`): quotes, backslashes, control and invisible formatting characters
/// escaped (U+2028 and U+202E too, which JSON allows raw but log viewers act on), bytes that
/// are not UTF-8 replaced, and at most [`MAX_LOGGED_BYTES`] of the value kept.
fn json_str(out: &mut String, value: Option<&[u8]>) {
    let Some(bytes) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    // Most values (methods, paths, ids) are printable ASCII: copied at once.
    if bytes.len() <= MAX_LOGGED_BYTES
        && bytes
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        if let Ok(text) = std::str::from_utf8(bytes) {
            out.push_str(text);
            out.push('"');
            return;
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let (shown, cut) = bounded(&text, MAX_LOGGED_BYTES);
    for c in shown.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hostile(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    if cut > 0 {
        let _ = write!(out, "...[{cut} more bytes]");
    }
    out.push('"');
}

/// `2026-12-01T20:30:00.123Z`.
fn rfc3339(out: &mut String, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    // Digit by digit: `write!` with widths was a tenth of a record's cost.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut digits = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, 4, u64::try_from(year.clamp(0, 9999)).unwrap_or(0));
    digits(5, 2, u64::from(month));
    digits(8, 2, u64::from(day));
    digits(11, 2, rest / 3600);
    digits(14, 2, rest % 3600 / 60);
    digits(17, 2, rest % 60);
    digits(20, 3, u64::from(since.subsec_millis()));
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// A value inside double quotes of a text log line: quotes, backslashes, control and
/// invisible formatting characters escaped, so a client cannot forge fields or lines, and
/// at most [`MAX_LOGGED_BYTES`] of it kept.
fn quoted(value: &str) -> String {
    crate::Printable::new(value).to_string()
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
    fn milliseconds_are_written_as_the_shortest_float() {
        let mut int = itoa::Buffer::new();
        // Up to years: where a float still holds every microsecond.
        let values = (0..20_000u64).chain([999_999, 1_000_000, 86_400_000_123, 10u64.pow(15) + 7]);
        for us in values {
            let mut line = String::new();
            push_millis(&mut line, us, &mut int);
            assert_eq!(line, format!("{:?}", us as f64 / 1e3), "{us} µs");
        }
    }

    #[test]
    fn every_field_of_a_line_is_cut() {
        let huge = "M".repeat(60 * 1024);
        let record = Record {
            client_ip: Some(IpAddr::from([192, 0, 2, 1])),
            method: http::Method::from_bytes(huge.as_bytes()).unwrap(),
            route: None,
            uri: format!("/{}?q={}", &huge[..30_000], &huge[..30_000])
                .parse()
                .unwrap(),
            redact: false,
            protocol: "HTTP/1.1",
            status: 200,
            bytes_in: 0,
            bytes_out: 2,
            ttfb_us: Some(1),
            duration_us: 2,
            request_id: None,
            user_agent: Some(http::HeaderValue::from_str(&huge).unwrap()),
            referer: Some(http::HeaderValue::from_str(&huge).unwrap()),
            answered_by: None,
            user: Some(crate::UserId::new(huge.clone())),
            trace_id: None,
            at: UNIX_EPOCH,
        };
        for format in [Format::Json, Format::Common, Format::Combined] {
            let line = record.line(format, &[]);
            assert!(
                line.len() < 8 * 1024,
                "{format:?}: a line of {} bytes",
                line.len()
            );
        }
    }

    #[test]
    fn dates_and_quoting() {
        let at = UNIX_EPOCH + Duration::from_secs(971_186_136); // 2000-10-10T13:55:36Z
        assert_eq!(clf_time(at), "10/Oct/2000:13:55:36 +0000");
        assert_eq!(
            clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "29/Feb/2000:00:00:00 +0000"
        );
        assert_eq!(quoted("a\"b\\c\nd"), "a\\\"b\\\\c\\u{a}d");
    }

    #[test]
    fn json_strings_and_times_are_escaped_and_exact() {
        let mut out = String::new();
        json_str(&mut out, Some(b"a\"b\\c\n\x01\xff"));
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\u{fffd}\"");
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\n\u{1}\u{fffd}");
        let mut plain = String::new();
        json_str(&mut plain, Some(b"/items/1?q=a b"));
        assert_eq!(plain, "\"/items/1?q=a b\"");
        let mut long = String::new();
        json_str(&mut long, Some("x".repeat(MAX_LOGGED_BYTES + 5).as_bytes()));
        assert!(long.ends_with("...[5 more bytes]\""), "{long}");
        let mut time = String::new();
        rfc3339(
            &mut time,
            UNIX_EPOCH + Duration::from_millis(971_186_136_042),
        );
        assert_eq!(time, "2000-10-10T13:55:36.042Z");
    }

    #[test]
    fn secrets_in_queries_are_redacted() {
        let redact = vec!["token".to_owned(), "api_key".to_owned()];
        assert_eq!(
            redact_query("q=shoes&token=abc&API_KEY=x&flag", &redact),
            "q=shoes&token=REDACTED&API_KEY=REDACTED&flag"
        );
        // Encoded, bracketed, `;`-separated and spelled otherwise: still the same names.
        for (query, logged) in [
            ("to%6Ben=abc", "to%6Ben=REDACTED"),
            (
                "token[]=abc&token[1]=def",
                "token[]=REDACTED&token[1]=REDACTED",
            ),
            ("a=1;token=abc", "a=1;token=REDACTED"),
            ("api-key=abc", "api-key=REDACTED"),
            ("Api%2DKey=abc", "Api%2DKey=REDACTED"),
            (
                "client_secret=abc&refresh_token=def",
                "client_secret=REDACTED&refresh_token=REDACTED",
            ),
            (
                "github_token=abc&x-amz-signature=def",
                "github_token=REDACTED&x-amz-signature=REDACTED",
            ),
            ("db_password=abc", "db_password=REDACTED"),
            ("page=2&sort=name&token", "page=2&sort=name&token"),
            ("", ""),
        ] {
            assert_eq!(redact_query(query, &redact), logged, "{query}");
        }
        // Names that only look alike are kept.
        assert_eq!(
            redact_query("tokens=3&monkey=1", &redact),
            "tokens=3&monkey=1"
        );
    }
}
