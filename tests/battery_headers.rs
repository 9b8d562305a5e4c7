//! Security and custom headers with the rest of the stack: on every response (404, 405, 422,
//! panics, other entries' early answers), HSTS only over TLS, handler headers kept unless
//! forced, and from the configuration file.

mod common;

use axum::{routing::get, Router};
use callnext::extract::Path;
use callnext::middleware::{SecurityHeaders, SetHeaders};
use callnext::{Stack, TestClient, TrustedProxies};
use http::{HeaderName, HeaderValue};

fn app() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ([("server", "gunicorn"), ("x-powered-by", "php")], "ok") }),
        )
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move { id.to_string() }),
        )
        .route(
            "/own",
            get(|| async { ([("referrer-policy", "origin")], "own") }),
        )
        .route(
            "/panic",
            get(|| async {
                panic!("boom");
                #[allow(unreachable_code)]
                ""
            }),
        )
}

#[tokio::test]
async fn the_api_preset_is_on_every_response() {
    let stack = common::limited(Stack::new().hook(SecurityHeaders::api()));
    let client = TestClient::new(stack.service(app()));
    let cases = [
        client.get("/").await,
        client.get("/missing").await,
        client.post("/").await,
        client.get("/items/abc").await,
        client.get("/panic").await,
        client.get("/limited").await,
    ];
    let statuses: Vec<u16> = cases.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 404, 405, 422, 500, 429]);
    for res in &cases {
        assert_eq!(
            res.header("content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'")
        );
        assert_eq!(res.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(
            res.header("cross-origin-resource-policy"),
            Some("same-origin")
        );
        assert_eq!(res.header("cache-control"), Some("no-store"));
        assert_eq!(res.header("strict-transport-security"), None);
        assert_eq!(res.header("server"), None);
        assert_eq!(res.header("x-powered-by"), None);
    }
}

#[tokio::test]
async fn hsts_only_over_tls_or_from_a_trusted_proxy_saying_https() {
    let stack = || Stack::new().hook(SecurityHeaders::api());
    // A proxy's word is not taken from an untrusted peer.
    let client = TestClient::new(stack().service(app()));
    let res = client.get("/").header("x-forwarded-proto", "https").await;
    assert_eq!(res.header("strict-transport-security"), None);

    let trusted = stack().trusted_proxies(TrustedProxies::parse(["127.0.0.1"]).unwrap());
    let client = TestClient::new(trusted.service(app()));
    let res = client.get("/").header("x-forwarded-proto", "https").await;
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    let res = client.get("/").header("x-forwarded-proto", "http").await;
    assert_eq!(res.header("strict-transport-security"), None);
}

#[tokio::test]
async fn handler_headers_are_kept_unless_forced_and_presets_differ() {
    let kept = TestClient::new(Stack::new().hook(SecurityHeaders::strict()).service(app()));
    let res = kept.get("/own").await;
    assert_eq!(res.header("referrer-policy"), Some("origin"));
    assert_eq!(res.header("x-frame-options"), Some("deny"));
    assert!(res
        .header("permissions-policy")
        .unwrap()
        .contains("camera=()"));
    assert_eq!(res.header("clear-site-data"), None);

    let forced = TestClient::new(
        Stack::new()
            .hook(SecurityHeaders::html().force(true))
            .service(app()),
    );
    let res = forced.get("/own").await;
    assert_eq!(res.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(res.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(res.header("x-xss-protection"), Some("0"));
    assert!(res
        .header("content-security-policy")
        .unwrap()
        .starts_with("default-src 'self';base-uri 'self';"));
}

#[tokio::test]
async fn custom_headers_land_on_errors_and_early_answers() {
    let headers = SetHeaders::new()
        .response_set(
            HeaderName::from_static("x-service"),
            HeaderValue::from_static("orders"),
        )
        .response_append(
            HeaderName::from_static("x-trace"),
            HeaderValue::from_static("b"),
        );
    let stack = common::limited(Stack::new().hook(headers));
    let client = TestClient::new(stack.service(app()));
    for path in ["/", "/missing", "/panic", "/limited"] {
        let res = client.get(path).await;
        assert_eq!(res.header("x-service"), Some("orders"), "{path}");
        assert_eq!(res.header("x-trace"), Some("b"), "{path}");
    }
}

#[tokio::test]
async fn from_the_configuration_file() {
    let stack = common::stack_from_config(
        r#"
[middleware.security_headers]
preset = "strict"

[middleware.set_header]
response_set = { "x-service" = "orders" }
request_if_absent = { "x-tenant" = "default" }
"#,
    )
    .unwrap();
    let app = app().route(
        "/tenant",
        get(|h: http::HeaderMap| async move { h["x-tenant"].to_str().unwrap().to_owned() }),
    );
    let client = TestClient::new(stack.service(app));
    let res = client.get("/tenant").await;
    assert_eq!(res.text(), "default");
    assert_eq!(res.header("x-service"), Some("orders"));
    assert_eq!(res.header("x-frame-options"), Some("deny"));

    let mistakes = [
        (
            "[middleware.security_headers]\npreset = \"paranoid\"\n",
            "app.toml:2: `middleware.security_headers.preset`: invalid `preset`: expected `api`, `html` or `strict`, got `paranoid`",
        ),
        (
            "[middleware.security_headers]\nhsts = \"1 year\"\n",
            "app.toml:2: `middleware.security_headers.hsts`: invalid `hsts`: expected a value with `max-age=`, such as `max-age=31536000; includeSubDomains`, got `1 year`",
        ),
        (
            "[middleware.set_header]\nresponse_set = { \"bad name\" = \"x\" }\n",
            "app.toml:2: `middleware.set_header.response_set.bad name`: \"bad name\" is not a header name",
        ),
        (
            "[middleware.set_header]\nresponse = { \"x\" = \"y\" }\n",
            "app.toml:2: `middleware.set_header.response`: unknown field `response`, expected one of `request_set`, `request_append`, `request_if_absent`, `response_set`, `response_append`, `response_if_absent`",
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
