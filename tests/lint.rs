//! The order linter: each rule, its warning in the log, strict stacks, and the file.

mod common;

use callnext::config::{Config, Registry};
use callnext::middleware::limit::BodyLimit;
use callnext::middleware::{Cors, SecurityHeaders, SetRequestId, Timeout};
use callnext::{ConfigErrorKind, Stack};

fn cors() -> Cors {
    Cors::builder()
        .allow_origins(["https://app.example"])
        .build()
        .unwrap()
}

#[test]
fn the_recommended_order_passes() {
    let stack = Stack::new()
        .hook(SetRequestId::new())
        .hook(cors())
        .hook(SecurityHeaders::api())
        .middleware(Timeout::new(std::time::Duration::from_secs(30)))
        .hook(BodyLimit::new(1000).unwrap());
    assert_eq!(stack.lint(), []);
    let names: Vec<_> = stack.describe().into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "request_id",
            "cors",
            "security_headers",
            "timeout",
            "body_limit"
        ]
    );
}

#[test]
fn a_request_id_after_anything_is_named_with_it() {
    let stack = Stack::new().hook(cors()).hook(SetRequestId::new());
    let warnings = stack.lint();
    assert_eq!(warnings.len(), 1);
    assert_eq!(warnings[0].rule(), "request-id-first");
    assert_eq!(
        warnings[0].to_string(),
        "`request_id` runs after `cors`: put the request id first, so every entry, log line and response carries it"
    );
}

#[test]
fn a_rate_limit_outside_cors_is_named_with_it() {
    let limit = callnext::middleware::RateLimit::builder()
        .limit("10/s")
        .build()
        .unwrap();
    let stack = Stack::new()
        .hook(SetRequestId::new())
        .hook(limit.clone())
        .hook(cors());
    let warnings = stack.lint();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].rule(), "cors-outside");
    assert_eq!(
        warnings[0].to_string(),
        "`cors` runs after `rate_limit`: put CORS before it, so its answers carry CORS headers and preflights pass"
    );
    let good = Stack::new()
        .hook(SetRequestId::new())
        .hook(cors())
        .hook(limit);
    assert_eq!(good.lint(), []);
}

#[tokio::test]
async fn warnings_are_logged_when_built_and_strict_stacks_refuse() {
    let logs = common::Logs::capture();
    let stack = Stack::new()
        .name("lint_logged")
        .middleware(Timeout::new(std::time::Duration::from_secs(1)))
        .hook(SetRequestId::new());
    let _service = stack.service(axum::Router::new());
    let lines = logs.lines_with("put the request id first");
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("stack=lint_logged")
            && l.contains("rule=\"request-id-first\"")),
        "{lines:?}"
    );

    let err = stack
        .strict_order(true)
        .try_service(axum::Router::new())
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::OrderRule);
    assert_eq!(
        err.to_string(),
        "`request_id` runs after `timeout`: put the request id first, so every entry, log line and response carries it"
    );
}

#[test]
fn from_the_configuration_file() {
    let text = "[stack]\norder = [\"cors\", \"request_id\"]\nstrict_order = true\n\n[middleware.cors]\nallow_origins = [\"https://a.example\"]\n\n[middleware.request_id]\n";
    let err = Config::parse(text, "app.toml", &[])
        .unwrap()
        .stack(&Registry::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "app.toml:2: `stack.order`: `request_id` runs after `cors`: put the request id first, so every entry, log line and response carries it"
    );
    let relaxed = text.replace("strict_order = true", "strict_order = false");
    let stack = Config::parse(&relaxed, "app.toml", &[])
        .unwrap()
        .stack(&Registry::new())
        .unwrap();
    assert_eq!(stack.lint().len(), 1);
}
