//! Twenty secrets planted in a configuration file, of every kind an operator writes (a header
//! sent to a collector, a set header, a session secret, a page token, passwords in URLs'
//! userinfo and query): none appears in `--print-config`, `--print-stack`, the live page, its
//! JSON or the server's logs.

mod common;

use std::process::Command;

const PLANTED: &str = "PLANTED";

/// A planted secret: `PLANTED` and its number, padded to `len`.
fn planted(n: u32, len: usize) -> String {
    let mut s = format!("{PLANTED}{n:02}x");
    while s.len() < len {
        s.push('x');
    }
    s
}

fn config() -> String {
    let dir = std::env::temp_dir().join(format!("callnext-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callnext.toml");
    let p = |n| planted(n, 12);
    let text = format!(
        r#"
[admin]
page = true
token = "{t1}"

[telemetry]
endpoint = "http://otel:{s2}@127.0.0.1:9/"
headers = {{ authorization = "Bearer {s3}", "x-honeycomb-team" = "{s4}" }}

[stack]
order = ["request_id", "access_log", "set_header", "rate_limit", "session", "auth"]

[middleware.request_id]

[middleware.access_log]
sink = "http"
url = "http://shipper:{s5}@127.0.0.1:9/ingest?api_key={s6}&stream=app"
headers = {{ authorization = "Basic {s7}", "x-api-key" = "{s8}" }}
retries = 0

[middleware.set_header]
request_set = {{ "x-upstream-auth" = "Bearer {s9}" }}
response_set = {{ "x-internal" = "{s10}" }}
response_append = {{ "x-other" = "{s11}" }}

[middleware.rate_limit]
store = "redis://:{s12}@127.0.0.1:9/0?password={s13}"
limit = "1000/minute"

[middleware.session]
store = "postgres://postgres:{s14}@127.0.0.1:5432/test?sslmode=disable&password={s15}"
secret = "{s16}"
old_secrets = ["{s17}"]

[middleware.auth]
public_paths = ["/_callnext/*", "/items/*"]
jwks_url = "https://idp.example/jwks.json?access_token={s18}"
jwt_audience = "app"
external_url = "http://gate:{s19}@127.0.0.1:9/check?ApiKey={s20}"
"#,
        t1 = planted(1, 24),
        s2 = p(2),
        s3 = p(3),
        s4 = p(4),
        s5 = p(5),
        s6 = p(6),
        s7 = p(7),
        s8 = p(8),
        s9 = p(9),
        s10 = p(10),
        s11 = p(11),
        s12 = p(12),
        s13 = p(13),
        s14 = p(14),
        s15 = p(15),
        s16 = planted(16, 64),
        s17 = planted(17, 64),
        s18 = p(18),
        s19 = p(19),
        s20 = p(20),
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Which planted secrets `text` shows.
fn leaked(text: &str) -> Vec<String> {
    text.match_indices(PLANTED)
        .map(|(at, _)| text[at..(at + PLANTED.len() + 2).min(text.len())].to_owned())
        .collect()
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

#[test]
fn planted_secrets_appear_in_no_printout() {
    let path = config();
    let printed = run(&["--config", &path, "--print-config"]);
    assert!(printed.contains("[middleware.session]"), "{printed}");
    assert!(printed.contains("<redacted>"), "{printed}");
    assert_eq!(leaked(&printed), Vec::<String>::new(), "{printed}");
    let stack = run(&["--config", &path, "--print-stack"]);
    assert!(stack.contains("set_header"), "{stack}");
    assert_eq!(leaked(&stack), Vec::<String>::new(), "{stack}");
}

#[test]
fn planted_secrets_appear_nowhere_on_the_live_page_or_in_the_logs() {
    let path = config();
    let token = planted(1, 24);
    let with_token = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let (logs, answers) = common::serve_then_stop(
        &["--config", &path, "--log-level", "debug"],
        &[
            common::raw_get("/items/1"),
            with_token("/_callnext/api/stack"),
            with_token("/_callnext/"),
        ],
    );
    let stack = String::from_utf8_lossy(&answers[1]).into_owned();
    assert!(stack.starts_with("HTTP/1.1 200"), "{stack}");
    assert!(stack.contains("\"settings\""), "{stack}");
    assert!(stack.contains("<redacted>"), "{stack}");
    let page = String::from_utf8_lossy(&answers[2]).into_owned();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // The bodies: the heads carry the headers the file sets on every response, by design.
    let body = |answer: &str| answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    let (stack, page) = (body(&stack), body(&page));
    for (what, text) in [("logs", &logs), ("api/stack", &stack), ("page", &page)] {
        assert_eq!(leaked(text), Vec::<String>::new(), "{what}: {text}");
    }
}
