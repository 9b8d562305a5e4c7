//! The production matrix: every battery together, built from a configuration file and served
//! over real sockets, in the recommended order (over HTTP/1.1 and HTTP/2) and in orders the
//! linter warns about. For every kind of answer, the access log's status and bytes are what
//! the client received, the request id is on the response and in the log, and CORS and
//! security headers are on every answer.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use callnext::admin::{Admin, LivePage};
use callnext::extract::Path;
use callnext::metrics::Metrics;
use callnext::middleware::auth::SqlKeyStore;
use callnext::serve::Server;
use callnext::HttpError;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ORIGIN: &str = "https://app.example";

fn app() -> Router {
    Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>| async move {
                if id == 99 {
                    return Err(HttpError::not_found("Item not found"));
                }
                Ok(axum::Json(serde_json::json!({ "item_id": id })))
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks =
                    (0..5).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("chunk {i}\n"))));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route("/echo", post(|body: Bytes| async move { body }))
        .route("/private", get(|| async { "private" }))
        .route("/admin/x", get(|| async { "admin" }))
        .route("/limited", get(|| async { "limited" }))
        .route("/dead", get(|| async { "dead" }))
        .route("/stalled", get(|| async { "stalled" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "slow"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("the handler failed");
                }
                "never"
            }),
        )
        .route(
            "/endless",
            get(|| async {
                let ticks = futures_util::stream::unfold(0u64, |n| async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from_static(b"tick\n")),
                        n + 1,
                    ))
                });
                axum::body::Body::from_stream(ticks).into_response()
            }),
        )
}

/// The recommended order.
const RECOMMENDED: [&str; 15] = [
    "request_id",
    "access_log",
    "trusted_host",
    "cors",
    "security_headers",
    "timeout",
    "concurrency",
    "body_limit",
    "rate_limit",
    "dead_limit",
    "stalled_limit",
    "session",
    "auth",
    "login_limit",
    "compression",
];

/// The recommended order, then orders the linter warns about: the access log outermost with
/// the request id after it; compression outside the log, CORS and security headers inside
/// what answers early; then the recommended order again over HTTP/2 (each answer a stream of
/// one connection). With each, whether it is over HTTP/2.
fn orders() -> Vec<(Vec<&'static str>, bool)> {
    let recommended = RECOMMENDED.to_vec();
    let mut log_first = recommended.clone();
    log_first.swap(0, 1);
    let mut inside: Vec<&str> = recommended
        .iter()
        .copied()
        .filter(|e| !["cors", "security_headers", "compression"].contains(e))
        .collect();
    inside.insert(1, "compression");
    let at = inside.iter().position(|e| *e == "login_limit").unwrap();
    inside.splice(at..at, ["cors", "security_headers"]);
    vec![
        (recommended.clone(), false),
        (log_first, false),
        (inside, false),
        (recommended, true),
    ]
}

struct Setup {
    dir: PathBuf,
    key: String,
    reader_key: String,
}

async fn setup(stalled_url: &str, order: &[&str], n: usize) -> (callnext::Stack, Setup) {
    let dir = std::env::temp_dir().join(format!("callnext-matrix-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let keys_url = format!("sqlite://{}", dir.join("keys.db").display());
    let keys = SqlKeyStore::open(&keys_url).unwrap();
    let key = keys
        .create("admin", &["admin".to_owned()])
        .await
        .unwrap()
        .key;
    let reader_key = keys
        .create("reader", &["read".to_owned()])
        .await
        .unwrap()
        .key;
    let log = dir.join("access.log");
    let order = order
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        r#"
[stack]
order = [{order}]
instrument = true

[middleware.request_id]

[middleware.access_log]
path = "{log}"
format = "json"

[middleware.trusted_host]
allowed_hosts = ["127.0.0.1", "x"]

[middleware.cors]
allow_origins = ["{ORIGIN}"]
allow_headers = ["x-api-key"]

[middleware.security_headers]
preset = "api"

[middleware.timeout]
after = "300ms"

[middleware.concurrency]
max = 100

[middleware.body_limit]
max = "1KB"

[middleware.rate_limit]
limit = "10000/minute"

[middleware.dead_limit]
kind = "rate_limit"
store = "redis://127.0.0.1:1"
on_store_error = "closed"
paths = ["/dead"]
store_timeout = "200ms"

[middleware.stalled_limit]
kind = "rate_limit"
store = "{stalled_url}"
on_store_error = "closed"
paths = ["/stalled"]
store_timeout = "200ms"

[middleware.session]
secret = "{secret}"

[middleware.auth]
api_keys = "{keys_url}"
public_paths = ["/endless", "/_callnext/*"]
scopes = {{ "/admin" = ["admin"] }}

[middleware.login_limit]
kind = "rate_limit"
limit = "1/minute"
paths = ["/limited"]

[middleware.compression]
min_size = "16B"
"#,
        log = log.display(),
        secret = "s".repeat(64),
    );
    let stack = common::stack_from_config(&config).unwrap_or_else(|e| panic!("{e}"));
    (
        stack,
        Setup {
            dir,
            key,
            reader_key,
        },
    )
}

/// A case's name, method, path, API key, body and expected status.
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<Vec<u8>>,
    u16,
);

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    bytes: u64,
}

/// HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) clients.
struct Clients {
    http1: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    http2: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Clients {
    fn new() -> Self {
        Self {
            http1: Client::builder(TokioExecutor::new()).build_http(),
            http2: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    clients: &Clients,
    http2: bool,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    case: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> Answer {
    let client = if http2 {
        &clients.http2
    } else {
        &clients.http1
    };
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("origin", ORIGIN)
        .header("user-agent", format!("matrix-{case}"))
        .header("accept-encoding", "gzip");
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    if case == "foreign-host-400" {
        req = req.header("host", "evil.example");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("answered")
        .expect("request");
    let expected = if http2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    assert_eq!(res.version(), expected, "{case}");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        bytes: body.len() as u64,
    }
}

/// The metrics and the live page count each request once, and each early answer under the
/// entry that gave it.
async fn counted_once(metrics: &Metrics, addr: std::net::SocketAddr, requests: usize) {
    let counted: u64 = metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, requests as u64, "{}", metrics.render());
    let url = format!("http://{addr}/_callnext/api/stack");
    let mut doc = serde_json::Value::Null;
    for _ in 0..200 {
        doc = serde_json::from_slice(&common::get(&url).await.body).unwrap();
        if doc["stacks"][0]["requests"] == requests {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stack = &doc["stacks"][0];
    assert_eq!(stack["requests"], requests, "{stack}");
    let answered = |entry: &str| -> Vec<(u64, u64)> {
        let entry = stack["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == entry)
            .unwrap_or_else(|| panic!("no {entry} in {stack}"));
        let mut rows: Vec<(u64, u64)> = entry["answered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["status"].as_u64().unwrap(), r["count"].as_u64().unwrap()))
            .collect();
        rows.sort_unstable();
        rows
    };
    assert_eq!(answered("auth"), [(401, 1), (403, 1)]);
    assert_eq!(answered("login_limit"), [(429, 1)]);
    assert_eq!(answered("body_limit"), [(413, 1)]);
    assert_eq!(answered("dead_limit"), [(503, 1)]);
    assert_eq!(answered("stalled_limit"), [(503, 1)]);
    assert_eq!(answered("timeout"), [(503, 1)]);
    assert_eq!(answered("request_id"), []);
}

fn records(path: &std::path::Path) -> HashMap<String, Vec<serde_json::Value>> {
    let mut by_case: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(case) = record["user_agent"]
            .as_str()
            .and_then(|ua| ua.strip_prefix("matrix-"))
            .map(str::to_owned)
        else {
            continue;
        };
        by_case.entry(case).or_default().push(record);
    }
    by_case
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_logged_as_the_client_got_it_in_every_order() {
    let stalled = common::OwnRedis::start().await;
    let clients = Clients::new();
    for (n, (order, http2)) in orders().iter().enumerate() {
        let recommended = order[..] == RECOMMENDED[..];
        let (stack, setup) = setup(&stalled.url(), order, n).await;
        let page = LivePage::new();
        let metrics = Metrics::new();
        let stack = stack.live(&page).metrics(&metrics);
        stalled.unstall();
        let app = app().merge(Admin::new().live_page(&page).router());
        let running = common::spawn(Server::new(), stack.service(app)).await;
        let addr = running.addr;
        let key = Some(setup.key.as_str());
        let reader = Some(setup.reader_key.as_str());

        let big = vec![b'x'; 4096];
        let cases: Vec<Case<'_>> = vec![
            ("ok", "GET", "/items/1", key, None, 200),
            ("streamed", "GET", "/stream", key, None, 200),
            ("http-error-404", "GET", "/items/99", key, None, 404),
            ("no-route-404", "GET", "/nope", key, None, 404),
            ("method-405", "DELETE", "/items/1", key, None, 405),
            ("invalid-422", "GET", "/items/abc", key, None, 422),
            ("too-large-413", "POST", "/echo", key, Some(big), 413),
            ("no-key-401", "GET", "/private", None, None, 401),
            ("no-scope-403", "GET", "/admin/x", reader, None, 403),
            ("first-200", "GET", "/limited", key, None, 200),
            ("limited-429", "GET", "/limited", key, None, 429),
            ("dead-store-503", "GET", "/dead", key, None, 503),
            ("stalled-store-503", "GET", "/stalled", key, None, 503),
            ("timeout-503", "GET", "/slow", key, None, 503),
            ("panic-500", "GET", "/panic", key, None, 500),
            ("foreign-host-400", "GET", "/items/1", key, None, 400),
        ];
        let mut answers = HashMap::new();
        for (case, method, path, key, body, expected) in cases {
            if case == "stalled-store-503" {
                stalled.stall();
            }
            let answer = send(&clients, *http2, addr, method, path, case, key, body).await;
            if case == "stalled-store-503" {
                stalled.unstall();
            }
            assert_eq!(answer.status, expected, "{case} in order {n}");
            let id = answer.headers.get("x-request-id");
            assert!(id.is_some(), "{case} in order {n}: no request id");
            // CORS and security headers land on every answer when they run outside whatever
            // answers (the third order puts them inside).
            // (The host check runs outside CORS: a request for another host gets none.)
            let cors_outside = order.iter().position(|e| *e == "cors")
                < order.iter().position(|e| *e == "timeout")
                && case != "foreign-host-400";
            if cors_outside {
                assert_eq!(
                    answer
                        .headers
                        .get("access-control-allow-origin")
                        .map(|v| v.to_str().unwrap()),
                    Some(ORIGIN),
                    "{case} in order {n}: no CORS headers"
                );
                assert_eq!(
                    answer
                        .headers
                        .get("x-content-type-options")
                        .map(|v| v.to_str().unwrap()),
                    Some("nosniff"),
                    "{case}: no security headers"
                );
            }
            answers.insert(case, answer);
        }

        // A client gone in the middle of a body.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!(
                    "GET /endless HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\nUser-Agent: matrix-gone\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut buf = vec![0; 4096];
        while !String::from_utf8_lossy(&seen).contains("tick") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended early");
            seen.extend_from_slice(&buf[..n]);
        }
        drop(stream);

        // Every record, once the server has noticed the client that went away.
        let log = setup.dir.join("access.log");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let by_case = loop {
            assert!(stack.flush(Duration::from_secs(10)));
            let by_case = records(&log);
            if by_case.contains_key("gone") || std::time::Instant::now() > deadline {
                break by_case;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let gone = &by_case["gone"][0];
        assert_eq!(gone["status"], 499, "order {n}: {gone}");
        assert!(
            gone["bytes_out"].as_u64().unwrap() >= 5,
            "order {n}: {gone}"
        );

        for (case, answer) in &answers {
            let Some(logged) = by_case.get(*case) else {
                // Only an access log outside everything that answers sees every answer.
                assert!(!recommended, "{case}: not logged");
                continue;
            };
            assert_eq!(logged.len(), 1, "{case} in order {n}: {logged:?}");
            let record = &logged[0];
            assert_eq!(
                record["status"], answer.status,
                "{case} in order {n}: {record}"
            );
            assert_eq!(
                record["bytes_out"], answer.bytes,
                "{case} in order {n}: {record}"
            );
            if recommended {
                assert_eq!(
                    record["request_id"].as_str(),
                    answer
                        .headers
                        .get("x-request-id")
                        .map(|v| v.to_str().unwrap()),
                    "{case}: {record}"
                );
            }
        }
        if recommended {
            assert_eq!(by_case.len(), answers.len() + 1, "{:?}", by_case.keys());
            counted_once(&metrics, running.addr, answers.len() + 1).await;
        }
        running.stop().await;
        let _ = std::fs::remove_dir_all(&setup.dir);
    }
}
