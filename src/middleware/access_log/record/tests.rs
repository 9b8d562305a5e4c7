use std::time::{Duration, UNIX_EPOCH};

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
