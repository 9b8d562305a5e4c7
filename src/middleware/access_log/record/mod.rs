//! One access log record and its three line formats.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

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
    #[cfg(test)]
    pub(super) fn line(&self, format: Format, redact: &[String]) -> String {
        let mut line = String::new();
        self.write_line(&mut line, format, redact);
        line
    }

    /// Appends the record's line to `line`.
    pub(super) fn write_line(&self, line: &mut String, format: Format, redact: &[String]) {
        let query = self.query(redact);
        match format {
            Format::Json => {
                line.push_str("{\"time\":\"");
                rfc3339(line, self.at);
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
                json_str(line, Some(self.method.as_str().as_bytes()));
                line.push_str(",\"route\":");
                json_str(line, self.route.as_ref().map(|r| r.as_str().as_bytes()));
                line.push_str(",\"path\":");
                json_str(line, Some(self.uri.path().as_bytes()));
                line.push_str(",\"query\":");
                json_str(line, query.as_deref().map(str::as_bytes));
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
                    Some(us) => push_millis(line, us, &mut int),
                    None => line.push_str("null"),
                }
                line.push_str(",\"duration_ms\":");
                push_millis(line, self.duration_us, &mut int);
                line.push_str(",\"request_id\":");
                json_str(
                    line,
                    self.request_id.as_ref().map(http::HeaderValue::as_bytes),
                );
                line.push_str(",\"user_agent\":");
                json_str(
                    line,
                    self.user_agent.as_ref().map(http::HeaderValue::as_bytes),
                );
                line.push_str(",\"referer\":");
                json_str(line, self.referer.as_ref().map(http::HeaderValue::as_bytes));
                line.push_str(",\"answered_by\":");
                json_str(line, self.answered_by.as_ref().map(|a| a.name().as_bytes()));
                line.push_str(",\"user\":");
                json_str(line, self.user().map(str::as_bytes));
                if let Some(trace_id) = &self.trace_id {
                    line.push_str(",\"trace_id\":");
                    json_str(line, Some(trace_id.as_bytes()));
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

/// A value inside double quotes of a text log line: quotes, backslashes, control and
/// invisible formatting characters escaped, so a client cannot forge fields or lines, and
/// at most [`MAX_LOGGED_BYTES`] of it kept.
fn quoted(value: &str) -> String {
    crate::Printable::new(value).to_string()
}

mod redact;
mod time;

use redact::redact_query;
use time::{clf_time, rfc3339};

#[cfg(test)]
mod tests;
