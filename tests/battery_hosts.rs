//! The trusted-host check and the HTTPS redirect: Starlette's own cases (`TrustedHostMiddleware`,
//! `HTTPSRedirectMiddleware`: request and answer as the originals' tests have them), then the
//! odd authority forms that try to get a foreign host past the check, over real sockets and
//! HTTP/2, and their place in a stack built from a file.

mod common;

use axum::{routing::get, Router};
use callnext::middleware::{HttpsRedirect, TrustedHost};
use callnext::serve::Server;
use callnext::{Stack, TestClient, TrustedProxies};

fn app() -> Router {
    Router::new().route("/", get(|| async { "OK" }))
}

fn hosts(allowed: &[&str]) -> TrustedHost {
    TrustedHost::builder()
        .allowed_hosts(allowed.iter().copied())
        .build()
        .unwrap()
}

fn client(stack: Stack) -> TestClient<callnext::StackService> {
    TestClient::new(stack.service(app()))
}

/// Starlette's `test_trusted_host_middleware`: `["testserver", "*.testserver"]`.
#[tokio::test]
async fn starlettes_trusted_host_cases() {
    let client = client(Stack::new().hook(hosts(&["testserver", "*.testserver"])));
    let status = |host: &'static str| {
        let client = client.clone();
        async move { client.get("/").header("host", host).await.status() }
    };
    assert_eq!(status("testserver").await, 200);
    assert_eq!(status("subdomain.testserver").await, 200);
    let refused = client.get("/").header("host", "invalidhost").await;
    assert_eq!(refused.status(), 400);
    assert_eq!(refused.text(), r#"{"detail":"Invalid host header"}"#);
    assert_eq!(refused.header("content-type"), Some("application/json"));

    // `*` lets any host through, a missing one included.
    let any = self::client(Stack::new().hook(hosts(&["*"])));
    assert_eq!(any.get("/").header("host", "anything").await.status(), 200);
    assert_eq!(any.get("/").await.status(), 200);
}

/// Starlette's `test_www_redirect`: `["www.example.com"]`, a request for `example.com`
/// redirected to the `www.` host (307), the scheme, path and query kept; off, it is a 400.
#[tokio::test]
async fn a_request_for_the_bare_domain_is_redirected_to_www() {
    let client = client(Stack::new().hook(hosts(&["www.example.com"])));
    let res = client.get("/path?q=1").header("host", "example.com").await;
    assert_eq!(res.status(), 307);
    assert_eq!(
        res.header("location"),
        Some("http://www.example.com/path?q=1")
    );
    // The redirect only ever names a host that is listed.
    let res = client.get("/").header("host", "evil.example").await;
    assert_eq!(res.status(), 400);

    let off = TrustedHost::builder()
        .allowed_hosts(["www.example.com"])
        .www_redirect(false)
        .build()
        .unwrap();
    let client = self::client(Stack::new().hook(off));
    assert_eq!(
        client.get("/").header("host", "example.com").await.status(),
        400
    );
}

/// Names compare without case, port or final dot; what names no host, or names it twice
/// differently, is refused.
#[tokio::test]
async fn odd_host_forms_pass_only_when_they_name_an_allowed_host() {
    let client = client(Stack::new().hook(hosts(&["example.com", "*.example.com", "::1"])));
    for host in [
        "example.com",
        "EXAMPLE.com",
        "example.com:8443",
        "example.com.",
        "api.example.com",
        "[::1]:8000",
    ] {
        assert_eq!(
            client.get("/").header("host", host).await.status(),
            200,
            "{host}"
        );
    }
    for host in [
        "example.com@evil.example",
        "evil.example@example.com",
        "example.com:http",
        "example.com.evil.example",
        "evilexample.com",
        ".example.com",
        "example.com/x",
        "example.com\\@evil.example",
        "",
        "[::2]",
    ] {
        assert_eq!(
            client.get("/").header("host", host).await.status(),
            400,
            "{host:?}"
        );
    }
    // No host at all, and two Host fields one of which is foreign.
    assert_eq!(client.get("/").await.status(), 400);
    let two = http::Request::get("/")
        .header("host", "example.com")
        .header("host", "evil.example")
        .body(callnext::Body::empty())
        .unwrap();
    assert_eq!(client.request(two).await.status(), 400);
    // An absolute-form target names its own authority, whatever `Host` says.
    let absolute = http::Request::get("http://evil.example/")
        .header("host", "example.com")
        .body(callnext::Body::empty())
        .unwrap();
    assert_eq!(client.request(absolute).await.status(), 400);
}

/// Over a real connection: an absolute-form target with a good `Host`, and HTTP/2's
/// `:authority`, are read as the server reads them.
#[tokio::test]
async fn the_authority_of_a_real_request_is_checked_in_http1_and_http2() {
    let stack = Stack::new().hook(hosts(&["example.com"]));
    let running = common::spawn(Server::new(), stack.service(app())).await;
    let addr = running.addr;
    let raw = |request: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let ok = raw("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n".into()).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let absolute = raw(
        "GET http://evil.example/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
            .into(),
    )
    .await;
    assert!(absolute.starts_with("HTTP/1.1 400"), "{absolute}");

    let mut sender = common::http2(addr).await;
    for (authority, host, expected) in [
        ("example.com", None, 200),
        ("evil.example", None, 400),
        // `:authority` and `Host` disagree: both must be allowed.
        ("evil.example", Some("example.com"), 400),
        ("example.com", Some("evil.example"), 400),
    ] {
        let mut req = http::Request::get(format!("http://{authority}/"));
        if let Some(host) = host {
            req = req.header("host", host);
        }
        let req = req
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), expected, "{authority} {host:?}");
    }
    running.stop().await;
}

/// Starlette's `test_https_redirect_middleware`: plain HTTP to `https`, the port dropped for
/// 80 and 443 and kept otherwise; a request that came over TLS passes.
#[tokio::test]
async fn starlettes_https_redirect_cases() {
    let client = client(Stack::new().hook(HttpsRedirect::new()));
    for (host, location) in [
        ("testserver", "https://testserver/"),
        ("testserver:80", "https://testserver/"),
        ("testserver:443", "https://testserver/"),
        ("testserver:123", "https://testserver:123/"),
        ("[::1]:8080", "https://[::1]:8080/"),
    ] {
        let res = client.get("/").header("host", host).await;
        assert_eq!(res.status(), 307, "{host}");
        assert_eq!(res.header("location"), Some(location), "{host}");
    }
    // A WebSocket upgrade goes to `wss`.
    let res = client
        .get("/ws?t=1")
        .header("host", "testserver")
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .await;
    assert_eq!(res.header("location"), Some("wss://testserver/ws?t=1"));
    // No readable host: nothing to redirect to.
    let res = client.get("/").header("host", "a@b").await;
    assert_eq!(res.status(), 400);

    let permanent = HttpsRedirect::builder().permanent(true).build().unwrap();
    let res = self::client(Stack::new().hook(permanent))
        .get("/")
        .header("host", "testserver")
        .await;
    assert_eq!(res.status(), 308);
}

/// HTTPS is what the connection or a trusted proxy says, never a header a client sends
/// itself: `X-Forwarded-Proto: https` from an untrusted peer is still redirected.
#[tokio::test]
async fn only_a_trusted_proxy_can_say_the_request_came_over_https() {
    let stack = Stack::new()
        .trusted_proxies(TrustedProxies::parse(["10.0.0.0/8"]).unwrap())
        .hook(HttpsRedirect::new());
    let from_proxy = client(stack.clone()).peer("10.0.0.5:4000".parse().unwrap());
    let from_client = client(stack).peer("203.0.113.9:4000".parse().unwrap());
    let req = |c: &TestClient<callnext::StackService>| {
        c.get("/")
            .header("host", "example.com")
            .header("x-forwarded-for", "198.51.100.7")
            .header("x-forwarded-proto", "https")
    };
    assert_eq!(req(&from_proxy).await.status(), 200);
    let res = req(&from_client).await;
    assert_eq!(res.status(), 307);
    assert_eq!(res.header("location"), Some("https://example.com/"));
}

/// Built from a file, in the recommended order; the linter wants the host check before
/// whatever answers, and building refuses bad patterns with the key.
#[tokio::test]
async fn from_the_file_in_the_recommended_order() {
    let stack = common::stack_from_config(
        r#"
[middleware.cors]
allow_origins = ["https://app.example"]

[middleware.https_redirect]
exclude_paths = ["/health/*"]

[middleware.trusted_host]
allowed_hosts = ["example.com"]

[middleware.request_id]
"#,
    )
    .unwrap();
    let names: Vec<_> = stack.describe().into_iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        ["request_id", "trusted_host", "https_redirect", "cors"]
    );
    assert!(stack.lint().is_empty(), "{:?}", stack.lint());
    let client = client(stack);
    let refused = client.get("/").header("host", "evil.example").await;
    assert_eq!(refused.status(), 400);
    assert!(refused.header("x-request-id").is_some());
    assert_eq!(
        client.get("/").header("host", "example.com").await.status(),
        307
    );

    let late = Stack::new()
        .hook(
            callnext::middleware::Cors::builder()
                .allow_origins(["https://app.example"])
                .build()
                .unwrap(),
        )
        .hook(hosts(&["example.com"]));
    let warnings = late.lint();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].rule(), "trusted-host-outside");
    assert_eq!(
        warnings[0].to_string(),
        "`trusted_host` runs after `cors`, which answers or acts on the request: put the host check before it, so a request for another host is refused first"
    );

    for (table, expected) in [
        (
            "[middleware.trusted_host]\n",
            "app.toml: `middleware.trusted_host.allowed_hosts`: invalid `allowed_hosts`: list at least one host, or \"*\" for any",
        ),
        (
            "[middleware.trusted_host]\nallowed_hosts = [\"example.com:80\"]\n",
            "app.toml:2: `middleware.trusted_host.allowed_hosts`: invalid `allowed_hosts`: `example.com:80`: expected a host name without port or path (`example.com`, `*.example.com`, `::1`)",
        ),
        (
            "[middleware.https_redirect]\nexclude_paths = [\"health\"]\n",
            "app.toml:2: `middleware.https_redirect.exclude_paths`: invalid `exclude_paths`: ",
        ),
    ] {
        let err = common::stack_from_config(table).unwrap_err();
        assert!(err.starts_with(expected), "{err}");
    }
}
