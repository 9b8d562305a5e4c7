//! What a client sends cannot forge or flood the server's logs: control and invisible
//! formatting characters in the path and headers are escaped in text and JSON lines (the
//! seed's own lines and the access log), and a huge path or request id is cut to a bound.

mod common;

/// Starts the binary with `format` logs and an access log of `access` format on stdout, sends
/// each raw request on its own connection, stops the server and returns everything it wrote.
fn logs_of(format: &str, access: &str, requests: &[Vec<u8>]) -> String {
    let dir = std::env::temp_dir().join(format!(
        "callnext-hostile-{format}-{access}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("callnext.toml");
    std::fs::write(
        &config,
        format!("[middleware.access_log]\nformat = \"{access}\"\npath = \"stdout\"\n"),
    )
    .unwrap();
    let config = config.display().to_string();
    let (out, answers) =
        common::serve_then_stop(&["--log-format", format, "--config", &config], requests);
    assert!(answers.iter().all(|a| !a.is_empty()), "no answer");
    out
}

fn hostile_request() -> Vec<u8> {
    // U+2028 (line separator), U+0085 (NEL), U+202E (right-to-left override), U+009B (CSI),
    // a quote, and a carriage return in a header value's obs-text neighbour.
    let mut request =
        b"GET /items/1/\xe2\x80\xa8x\xc2\x85y\xe2\x80\xaez\xc2\x9b\"q HTTP/1.1\r\n".to_vec();
    request.extend_from_slice(
        b"Host: x\r\nUser-Agent: ua\xe2\x80\xa8\xc2\x85\r\nConnection: close\r\n\r\n",
    );
    request
}

fn huge_request() -> Vec<u8> {
    // Within the 64 KiB header limit together.
    let path = "a".repeat(40_000);
    let id = "b".repeat(20_000);
    format!("GET /{path} HTTP/1.1\r\nHost: x\r\nx-request-id: {id}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

const HOSTILE: [char; 4] = ['\u{2028}', '\u{85}', '\u{202e}', '\u{9b}'];

#[test]
fn hostile_characters_never_reach_text_or_json_logs_raw() {
    for (format, access) in [("text", "combined"), ("json", "json")] {
        let out = logs_of(format, access, &[hostile_request()]);
        for c in HOSTILE {
            assert!(!out.contains(c), "{format}: raw {c:?} in:\n{out}");
        }
        assert!(
            out.contains("\\u{2028}") || out.contains("\\u2028"),
            "{format}:\n{out}"
        );
        // Every line is one record: text lines are whole, JSON lines parse.
        let access_lines: Vec<&str> = out.lines().filter(|l| l.contains("/items/1/")).collect();
        assert!(access_lines.len() >= 2, "{format}:\n{out}");
        if format == "json" {
            for line in out.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
        } else {
            // The quote in the path cannot end the quoted request line early.
            let combined = access_lines
                .iter()
                .find(|l| l.contains("\"GET "))
                .expect("the access log line");
            assert!(combined.contains("\\\"q HTTP/1.1\""), "{combined}");
        }
    }
}

#[test]
fn huge_request_values_are_cut_in_the_logs() {
    for (format, access) in [("text", "combined"), ("json", "json")] {
        let quiet = logs_of(format, access, &[]).len();
        let out = logs_of(format, access, &[huge_request()]);
        // 60 KB of path and id: a few KB of log at most, with the marker.
        assert!(
            out.len() - quiet < 16_000,
            "{format}: {} bytes of log",
            out.len() - quiet
        );
        assert!(out.contains("more bytes]"), "{format}:\n{out}");
    }
}
