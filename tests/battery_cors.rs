//! CORS with the rest of the stack: headers on later entries' 401 and 429, preflights answered
//! before auth, Starlette's answers, `Vary` merged, and the configuration file.

mod common;

use axum::{routing::get, Router};
use callnext::middleware::Cors;
use callnext::{HttpError, Stack, TestClient};
use http::StatusCode;

const ORIGIN: &str = "https://app.example";

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }).post(|| async { "posted" }))
        .route(
            "/varied",
            get(|| async { ([("vary", "Accept-Encoding")], "v") }),
        )
}

/// Later entries that answer early: an auth check (401 without `Authorization`) and a limit
/// (429 on `/limited`).
fn guarded(stack: Stack) -> Stack {
    stack.on_request("auth", |req: &mut callnext::Request| {
        if req.uri().path() == "/limited" {
            return Err(HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
            ));
        }
        if req.headers().contains_key("authorization") {
            Ok(())
        } else {
            Err(HttpError::unauthorized("Not authenticated"))
        }
    })
}

fn client(cors: Cors) -> TestClient<callnext::StackService> {
    TestClient::new(guarded(Stack::new().hook(cors)).service(app()))
}

fn listed() -> Cors {
    Cors::builder()
        .allow_origins([ORIGIN])
        .allow_methods(["GET", "POST"])
        .allow_headers(["authorization", "x-trace"])
        .expose_headers(["x-request-id"])
        .build()
        .unwrap()
}

#[tokio::test]
async fn later_entries_early_answers_carry_cors_headers() {
    let client = client(listed());
    let res = client.get("/").header("origin", ORIGIN).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        res.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(res.header("vary"), Some("Origin"));
    let res = client.get("/limited").header("origin", ORIGIN).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.header("access-control-allow-origin"), Some(ORIGIN));

    // No Origin: no CORS headers at all; another origin: none either. Both still vary on
    // Origin: a cache keeping either must not serve it to the allowed origin, nor the allowed
    // origin's answer to them.
    let res = client.get("/").bearer("t").await;
    assert_eq!(res.status(), 200);
    assert!(res
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
    assert_eq!(res.header("vary"), Some("Origin"));
    let res = client
        .get("/")
        .bearer("t")
        .header("origin", "https://evil.example")
        .await;
    assert_eq!(res.header("access-control-allow-origin"), None);
    assert_eq!(res.header("vary"), Some("Origin"));
    let res = client.get("/varied").bearer("t").await;
    let vary: Vec<_> = res.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding, Origin"]);
}

#[tokio::test]
async fn a_wildcard_without_credentials_does_not_vary_on_origin() {
    let client = client(Cors::builder().allow_origins(["*"]).build().unwrap());
    let res = client.get("/").bearer("t").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.header("vary"), None);
}

#[tokio::test]
async fn preflights_are_answered_before_auth_sees_them() {
    let client = client(listed());
    let res = client
        .options("/")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "Authorization, Content-Type",
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text(), "OK");
    assert_eq!(res.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        res.header("access-control-allow-methods"),
        Some("GET, POST")
    );
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("Accept, Accept-Language, Content-Language, Content-Type, authorization, x-trace")
    );
    assert_eq!(res.header("access-control-max-age"), Some("600"));
    assert_eq!(res.header("vary"), Some("Origin"));

    let refused = client
        .options("/")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "x-secret")
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.text(),
        r#"{"detail":"Disallowed CORS origin, method, headers"}"#
    );
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let refused = client
        .options("/")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "PUT")
        .await;
    assert_eq!(refused.text(), r#"{"detail":"Disallowed CORS method"}"#);

    // A plain OPTIONS without Access-Control-Request-Method is no preflight: it goes on.
    let plain = client.options("/").header("origin", ORIGIN).await;
    assert_eq!(plain.status(), 401);
}

#[tokio::test]
async fn wildcards_answer_star_unless_the_request_has_credentials() {
    let client = client(
        Cors::builder()
            .allow_origins(["*"])
            .allow_methods(["*"])
            .allow_headers(["*"])
            .build()
            .unwrap(),
    );
    let res = client
        .get("/limited")
        .header("origin", "https://any.example")
        .await;
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    assert_eq!(res.header("vary"), None);

    let res = client
        .get("/")
        .bearer("t")
        .header("origin", "https://any.example")
        .await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://any.example")
    );
    assert_eq!(res.header("vary"), Some("Origin"));

    let res = client
        .options("/")
        .header("origin", "https://any.example")
        .header("access-control-request-method", "PATCH")
        .header("access-control-request-headers", "x-anything, x-else")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("x-anything, x-else")
    );
    assert_eq!(
        res.header("access-control-allow-methods"),
        Some("DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT")
    );
}

#[tokio::test]
async fn vary_is_merged_and_never_doubled() {
    let stack = Stack::new()
        .hook(listed())
        .push(callnext::Entry::hook(listed()).named("cors_again"));
    let res = TestClient::new(stack.service(app()))
        .get("/varied")
        .header("origin", ORIGIN)
        .await;
    let vary: Vec<_> = res.headers().get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding, Origin"]);
}

#[tokio::test]
async fn from_the_configuration_file_exposing_the_request_id() {
    let stack = common::stack_from_config(
        r#"
[middleware.request_id]

[middleware.cors]
allow_origins = ["https://app.example"]
allow_methods = ["GET", "POST"]
allow_headers = ["authorization", "content-type"]
allow_credentials = true
max_age = "1h"
"#,
    )
    .unwrap();
    let names: Vec<_> = stack.describe().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["request_id", "cors"]);
    let client = TestClient::new(stack.service(app()));
    let res = client.get("/").header("origin", ORIGIN).await;
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(
        res.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert!(res.header("x-request-id").is_some());
    let res = client
        .options("/")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .await;
    assert_eq!(res.header("access-control-max-age"), Some("3600"));

    let mistakes = [
        (
            "[middleware.cors]\nallow_origins = [\"*\"]\nallow_credentials = true\n",
            "app.toml:2: `middleware.cors.allow_origins`: invalid `allow_origins`: `*` cannot be used with credentials; list the origins",
        ),
        (
            "[middleware.cors]\nallow_origins = [\"https://app.example/path\"]\n",
            "app.toml:2: `middleware.cors.allow_origins`: invalid `allow_origins`: `https://app.example/path` is not an origin: expected `scheme://host[:port]` with no path or pattern",
        ),
        (
            "[middleware.cors]\nallow_origins = [\"null\"]\n",
            "app.toml:2: `middleware.cors.allow_origins`: invalid `allow_origins`: `null` is refused: any sandboxed page or file can send `null`",
        ),
        (
            "[middleware.cors]\nallow_origins = [\"https://a.example\"]\nallow_headers = [\"*\"]\nallow_credentials = true\n",
            "app.toml:3: `middleware.cors.allow_headers`: invalid `allow_headers`: `*` cannot be used with credentials; list the headers",
        ),
        (
            "[middleware.cors]\nmax_age = 600\n",
            "app.toml:2: `middleware.cors.max_age`: invalid type: integer `600`, expected a duration with a unit such as \"30s\" or \"10ms\"",
        ),
    ];
    for (text, expected) in mistakes {
        assert_eq!(
            common::stack_from_config(text).err().as_deref(),
            Some(expected),
            "{text}"
        );
    }
}

#[tokio::test]
async fn header_names_are_listed_as_configured_and_matched_without_case() {
    let cors = Cors::builder()
        .allow_origins([ORIGIN])
        .allow_headers(["X-Status", "content-type"])
        .expose_headers(["X-Status", "x-Other"])
        .build()
        .unwrap();
    let client = client(cors);
    // As Starlette lists them: safelisted and configured names as written, sorted.
    let res = client
        .options("/")
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-status")
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.header("access-control-allow-headers"),
        Some("Accept, Accept-Language, Content-Language, Content-Type, X-Status, content-type")
    );
    let res = client.get("/").header("origin", ORIGIN).await;
    assert_eq!(
        res.header("access-control-expose-headers"),
        Some("X-Status, x-Other")
    );
}

#[tokio::test]
async fn origins_a_regular_expression_matches_whole_are_allowed() {
    let cors = Cors::builder()
        .allow_origin_regex(r"https://[a-z0-9-]+\.app\.example")
        .allow_credentials(true)
        .build()
        .unwrap();
    let regex = client(cors);
    let res = regex
        .get("/")
        .header("origin", "https://pr-42.app.example")
        .await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://pr-42.app.example")
    );
    assert_eq!(res.header("vary"), Some("Origin"));
    // A whole match only: a longer origin that contains one is not allowed.
    for refused in [
        "https://pr-42.app.example.evil.example",
        "https://evil.example/https://pr-42.app.example",
        "http://pr-42.app.example",
        "null",
    ] {
        let res = regex.get("/").header("origin", refused).await;
        assert_eq!(res.header("access-control-allow-origin"), None, "{refused}");
    }
    let res = regex
        .options("/")
        .header("origin", "https://pr-42.app.example")
        .header("access-control-request-method", "GET")
        .await;
    assert_eq!(res.status(), 200);
    // `null` (sandboxed pages, files) is never allowed, even by a pattern that matches it.
    let any = client(Cors::builder().allow_origin_regex(".*").build().unwrap());
    let res = any.get("/").header("origin", "null").await;
    assert_eq!(res.header("access-control-allow-origin"), None);
    let res = any.get("/").header("origin", "https://a.example").await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://a.example")
    );
    let err = Cors::builder()
        .allow_origin_regex("https://(")
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid `allow_origin_regex`: `https://(` is not a regular expression: "),
        "{err}"
    );
}
