//! The live stack page of the binary: its JSON snapshot after known requests, who may see it,
//! and the page itself in headless Chromium (driven through ChromeDriver), which shows the
//! stack in execution order and a blocking event within seconds.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{get, Server};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long anything this test waits for may take (except the issue's 3 s).
const PATIENCE: Duration = Duration::from_secs(30);

/// The batteries of the configuration below, in the order the server runs them.
const BATTERIES: [&str; 5] = [
    "request_id",
    "access_log",
    "cors",
    "security_headers",
    "rate_limit",
];

/// Several batteries (the rate limiter on /items at 3/minute) and the page.
const BATTERIES_CONFIG: &str = r#"
[middleware.request_id]

[middleware.cors]
allow_origins = ["https://app.example"]

[middleware.security_headers]

[middleware.rate_limit]
limit = "3/minute"
paths = ["/items"]

[middleware.access_log]

[admin]
page = true
"#;

/// Writes `text` as a configuration file of its own and returns its path.
fn write_config(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("callnext-live-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("callnext.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// A request with extra headers and, if given, a JSON body; the answer's head and body.
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (http::response::Parts, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            req = req.header("content-type", "application/json");
            Full::new(Bytes::from(body.to_string()))
        }
        None => Full::new(Bytes::new()),
    };
    let res = tokio::time::timeout(PATIENCE, client.request(req.body(body).unwrap()))
        .await
        .unwrap_or_else(|_| panic!("{method} {url} timed out"))
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
    let (parts, body) = res.into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

async fn status(url: &str, headers: &[(&str, &str)]) -> u16 {
    request("GET", url, headers, None).await.0.status.as_u16()
}

/// The page's JSON snapshot; its first (only) stack.
async fn stack_snapshot(server: &Server) -> Value {
    let (parts, body) = get(&server.url("/_callnext/api/stack")).await;
    assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&body));
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["stacks"].as_array().map(Vec::len), Some(1), "{doc}");
    doc["stacks"][0].clone()
}

fn entry_names(stack: &Value) -> Vec<String> {
    stack["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn entry<'a>(stack: &'a Value, name: &str) -> &'a Value {
    stack["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name} in {stack}"))
}

fn route<'a>(stack: &'a Value, route: &str) -> &'a Value {
    stack["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no route {route} in {}", stack["routes"]))
}

/// The entries `callnext --config <config> --print-stack` lists, in order (`app` last).
fn printed_stack(config: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_callnext"))
        .args(["--config", config, "--print-stack"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "  0  request_id  request_id  hook  (defaults)" ... "  -  app  seed  endpoint"
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let index = words.next()?;
            let name = words.next()?;
            (index == "-" || index.parse::<usize>().is_ok()).then(|| name.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_the_seed_server() {
    let config = write_config("seed", BATTERIES_CONFIG);
    let printed = printed_stack(&config);
    assert_eq!(
        printed.last().map(String::as_str),
        Some("app"),
        "{printed:?}"
    );
    // A threshold far above a scheduler's preemption on a busy 2-core machine (a rate-limit
    // poll once measured 10 ms there), and a demo block far above the threshold.
    let mut server = Server::start(&[
        "--config",
        &config,
        "--no-simulated-io",
        "--demo-blocking",
        "--blocking-threshold-ms",
        "150",
    ])
    .await;
    // The server logs its stack at start: the same entries as --print-stack.
    server
        .wait_for(|l| l["message"] == "live stack page on" && l["path"] == "/_callnext")
        .await;
    for (index, name) in printed.iter().filter(|n| *n != "app").enumerate() {
        let line = server
            .wait_for(|l| l["message"] == "middleware" && l["index"] == index)
            .await;
        assert_eq!(line["name"], name.as_str(), "{line}");
    }

    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&server.url("/items/1")).await.0.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let (parts, body) = get(&server.url("/demo/block?ms=300")).await;
    assert_eq!(parts.status, 200, "{}", String::from_utf8_lossy(&body));
    let request_id = parts.headers["x-request-id"].to_str().unwrap().to_owned();

    let stack = stack_snapshot(&server).await;
    assert_eq!(stack["name"], "main");
    let names = entry_names(&stack);
    let mut expected = printed.clone();
    expected.push("body".to_owned());
    assert_eq!(names, expected, "the page's order is --print-stack's");
    assert_eq!(names[..BATTERIES.len()], BATTERIES);
    assert_eq!(names[names.len() - 2..], ["app", "body"]);
    for (index, e) in stack["entries"].as_array().unwrap().iter().enumerate() {
        assert_eq!(e["index"], index, "{e}");
    }
    assert_eq!(entry(&stack, "rate_limit")["kind"], "hook");
    assert_eq!(
        entry(&stack, "rate_limit")["answered"],
        json!([{"status": 429, "count": 2}])
    );
    assert_eq!(entry(&stack, "request_id")["answered"], json!([]));
    assert_eq!(entry(&stack, "request_id")["calls"], 6, "{stack}");
    assert!(entry(&stack, "app")["blocking"].as_u64().unwrap() >= 1);
    assert_eq!(entry(&stack, "rate_limit")["blocking"], 0);

    let events = stack["blocking_events"].as_array().unwrap();
    let event = events
        .iter()
        .find(|e| e["entry"] == "app")
        .unwrap_or_else(|| panic!("no blocking event of app: {events:?}"));
    assert_eq!(event["route"], "/demo/block", "{event}");
    assert_eq!(event["method"], "GET", "{event}");
    assert_eq!(event["request_id"], request_id.as_str(), "{event}");
    assert!(event["duration_ms"].as_f64().unwrap() >= 55.0, "{event}");

    // Five requests to /items/1: the three the app answered under their route template; the
    // rate limiter's two 429s were answered before the router ran, so no template is known for
    // them and they count under `unmatched`, as in the metrics.
    let items = route(&stack, "/items/{item_id}");
    assert_eq!(items["requests"], 3, "{items}");
    assert_eq!(items["status"]["2xx"], 3, "{items}");
    let unmatched = route(&stack, "unmatched");
    assert_eq!(unmatched["requests"], 2, "{unmatched}");
    assert_eq!(unmatched["status"]["4xx"], 2, "{unmatched}");
    assert_eq!(
        items["requests"].as_u64().unwrap() + unmatched["requests"].as_u64().unwrap(),
        5
    );
    assert_eq!(stack["requests"], 6, "{stack}");
    assert_eq!(stack["status"]["2xx"], 4, "{}", stack["status"]);
    assert_eq!(stack["status"]["4xx"], 2, "{}", stack["status"]);
    assert_eq!(route(&stack, "/demo/block")["requests"], 1);
    assert!(
        stack["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !r["route"].as_str().unwrap().starts_with("/_callnext")),
        "the page's own requests are not counted: {}",
        stack["routes"]
    );

    // Behind a trusted proxy: the client the proxy names decides, and only loopback may see
    // the page (anyone else is told there is nothing there).
    let proxied = write_config(
        "proxied",
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[admin]\npage = true\n",
    );
    let server = Server::start(&["--config", &proxied, "--no-simulated-io"]).await;
    let xff = ("x-forwarded-for", "203.0.113.5");
    for path in ["/_callnext/", "/_callnext/api/stack"] {
        assert_eq!(status(&server.url(path), &[]).await, 200, "{path} direct");
        assert_eq!(
            status(&server.url(path), &[xff]).await,
            404,
            "{path} via XFF"
        );
    }
    let (parts, _) = request("GET", &server.url("/_callnext/api/stack"), &[xff], None).await;
    assert_eq!(parts.headers["cache-control"], "no-store");

    // With a token: whoever bears it, and no one else.
    let token = "a-token-for-the-live-page-test";
    let tokened = write_config(
        "token",
        &format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[admin]\npage = true\ntoken = \"{token}\"\n"
        ),
    );
    let server = Server::start(&["--config", &tokened, "--no-simulated-io"]).await;
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());
    let wrong = ("authorization", "Bearer not-the-token-at-all-no");
    let url = server.url("/_callnext/api/stack");
    assert_eq!(status(&url, &[xff]).await, 403, "via XFF, no token");
    assert_eq!(status(&url, &[]).await, 403, "loopback, no token");
    assert_eq!(status(&url, &[xff, wrong]).await, 403, "a wrong token");
    assert_eq!(status(&url, &[xff, auth]).await, 200, "via XFF, the token");
    assert_eq!(status(&server.url("/_callnext/"), &[xff, auth]).await, 200);
}

/// ChromeDriver on a port of its own; ended (with the browsers it started) when dropped, a
/// failing test included.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing (Debian package `{package}`): the live page's browser test \
                 needs headless Chromium and ChromeDriver (`apt-get install chromium \
                 chromium-driver`; .ci/run installs them)"
            );
        }
        let mut command = Command::new(CHROMEDRIVER);
        // A group of its own: the browsers it starts end with it.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} did not start: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads its output to the end, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut driver = Self { child, port: 0 };
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        const STARTED: &str = "ChromeDriver was started successfully on port ";
        driver.port = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("ChromeDriver never said its port ({e}): {seen:?}"));
            if let Some(rest) = line.split(STARTED).nth(1) {
                break rest.trim_end_matches('.').trim().parse().unwrap();
            }
            seen.push(line);
        };
        driver
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        common::kill_group(&mut self.child);
    }
}

/// A WebDriver session: plain HTTP and JSON to ChromeDriver.
struct Session {
    base: String,
}

impl Session {
    async fn new(driver: &ChromeDriver) -> Self {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1100"],
            },
        }}});
        let root = format!("http://127.0.0.1:{}", driver.port);
        let value = command("POST", &format!("{root}/session"), Some(&capabilities)).await;
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {value}"));
        Self {
            base: format!("{root}/session/{id}"),
        }
    }

    async fn go(&self, url: &str) {
        command(
            "POST",
            &format!("{}/url", self.base),
            Some(&json!({ "url": url })),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns what it returned.
    async fn run(&self, script: &str) -> Value {
        let body = json!({ "script": script, "args": [] });
        command("POST", &format!("{}/execute/sync", self.base), Some(&body)).await
    }

    /// Runs `script` every 100 ms until it returns something other than `null` or `false`
    /// (returned), or `within` has passed (a panic naming `what`).
    async fn until(&self, what: &str, within: Duration, script: &str) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.run(script).await;
            if !value.is_null() && value != false {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?} (last: {value})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The number of the snapshot the page rendered last, once it rendered one.
    async fn seq(&self) -> u64 {
        self.until(
            "the page rendered a snapshot",
            PATIENCE,
            "return document.body.dataset.seq ? Number(document.body.dataset.seq) : null;",
        )
        .await
        .as_u64()
        .unwrap()
    }

    /// A PNG of the window.
    async fn screenshot(&self) -> Vec<u8> {
        let value = command("GET", &format!("{}/screenshot", self.base), None).await;
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap()
    }

    async fn delete(self) {
        command("DELETE", &self.base, None).await;
    }
}

/// One WebDriver command: its `value`, or a panic with the driver's error.
async fn command(method: &str, url: &str, body: Option<&Value>) -> Value {
    let (parts, bytes) = request(method, url, &[], body).await;
    let mut doc: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{method} {url}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(parts.status, 200, "{method} {url}: {doc}");
    doc["value"].take()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_shows_the_stack_and_a_blocking_event() {
    let config = write_config("browser", BATTERIES_CONFIG);
    let server =
        Server::start(&["--config", &config, "--no-simulated-io", "--demo-blocking"]).await;
    let driver = ChromeDriver::start();
    let browser = Session::new(&driver).await;
    browser.go(&server.url("/_callnext/")).await;
    let first = browser.seq().await;

    // The stack table: the snapshot's entries, in execution order.
    let rows = browser
        .run("return Array.from(document.querySelectorAll('#stack tbody tr')).map(r => r.dataset.entry);")
        .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    let names = entry_names(&stack_snapshot(&server).await);
    assert_eq!(rows, names, "the page's rows are the snapshot's entries");
    assert_eq!(rows[..BATTERIES.len()], BATTERIES);
    assert_eq!(rows[rows.len() - 2..], ["app", "body"]);

    // Some figures: ordinary requests, two refused by the rate limiter, then a blocking one.
    assert_eq!(get(&server.url("/")).await.0.status, 200);
    let mut statuses = Vec::new();
    for id in [1, 2, 3, 4, 5] {
        let url = server.url(&format!("/items/{id}?q=live"));
        statuses.push(get(&url).await.0.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let (parts, _) = get(&server.url("/demo/block?ms=80")).await;
    assert_eq!(parts.status, 200);
    let answered = Instant::now();
    browser
        .until(
            "the blocking event on the page",
            PATIENCE,
            r#"return document.querySelector('#blocking li[data-entry="app"]') !== null;"#,
        )
        .await;
    let shown = answered.elapsed();
    println!("the blocking event was on the page {shown:?} after its response");
    assert!(
        shown <= Duration::from_secs(3),
        "the blocking event took {shown:?} to show (at most 3 s)"
    );
    let text = browser
        .run(r#"return document.querySelector('#blocking li[data-entry="app"]').textContent;"#)
        .await;
    assert!(
        text.as_str().unwrap().contains("/demo/block"),
        "the event names its route: {text}"
    );

    // One more snapshot, so every figure is in, then a picture of the page.
    let seen = browser.seq().await;
    assert!(seen > first);
    browser
        .until(
            "a newer snapshot",
            PATIENCE,
            &format!("return Number(document.body.dataset.seq) > {seen};"),
        )
        .await;
    let answered = browser
        .run(r#"return document.querySelector('#stack tbody tr[data-entry="rate_limit"]').textContent;"#)
        .await;
    assert!(
        answered.as_str().unwrap().contains("2 × 429"),
        "the rate limiter's row shows its 429s: {answered}"
    );
    let png = browser.screenshot().await;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-page.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());
    if let Some(extra) = std::env::var_os("CALLNEXT_SCREENSHOT") {
        std::fs::write(&extra, &png).unwrap();
        println!("screenshot: {}", extra.to_string_lossy());
    }
    browser.delete().await;
    drop(driver);
}
