//! The Prometheus metrics, scraped over HTTP and parsed; registries the application owns.

mod common;

use std::collections::BTreeMap;

use axum::{routing::get, Router};
use callnext::extract::Path;
use callnext::metrics::Metrics;
use callnext::serve::Server;
use callnext::{ConfigErrorKind, Entry, HttpError, Next, Request, Response, Stack, TestClient};

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format: `# HELP`/`# TYPE` lines and `name{k="v",...} value`.
fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close");
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").expect("label =\"");
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next().expect("label value closes") {
                            (_, '\\') => value.push(chars.next().unwrap().1),
                            (i, '"') => break i,
                            (_, c) => value.push(c),
                        }
                    };
                    labels.insert(key.trim_start_matches(',').to_owned(), value);
                    rest = after[end + 1..].trim_start_matches(',');
                }
                (name, labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name}"
        );
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    (samples, types)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

async fn blocks(req: Request, next: Next<'_>) -> Response {
    if req.uri().path() == "/items/7" {
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    next.run(req).await
}

async fn pass(req: Request, next: Next<'_>) -> Response {
    next.run(req).await
}

/// The seed's routes, without its sleeps, and `/metrics` from `metrics`.
fn app(metrics: &Metrics) -> Router {
    async fn read_item(Path(item_id): Path<i64>) -> Result<String, HttpError> {
        if item_id == 99 {
            return Err(HttpError::not_found("Item 99 not found"));
        }
        Ok(item_id.to_string())
    }
    Router::new()
        .route("/items/{item_id}", get(read_item))
        .route("/metrics", metrics.route())
}

#[tokio::test]
async fn scrape_over_http() {
    let metrics = Metrics::new();
    let stack = Stack::new()
        .push(Entry::func(pass).named("another"))
        .push(Entry::func(pass).named("timing"))
        .push(Entry::func(blocks).named("metrics_blocker"))
        .metrics(&metrics);
    let running = common::spawn(Server::new(), stack.service(app(&metrics))).await;
    for path in [
        "/items/1",
        "/items/2",
        "/items/99",
        "/items/abc",
        "/items/7",
    ] {
        common::get(&running.url(path)).await;
    }
    let res = common::get(&running.url("/metrics")).await;
    assert_eq!(res.status, 200);
    assert!(res
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let (samples, types) = parse(&res.text());

    let requests = |status: &str| {
        find(
            &samples,
            "http_requests_total",
            &[
                ("stack", "main"),
                ("method", "GET"),
                ("route", "/items/{item_id}"),
                ("status", status),
            ],
        )
        .map(|s| s.value)
    };
    assert_eq!(requests("200"), Some(3.0));
    assert_eq!(requests("404"), Some(1.0));
    assert_eq!(requests("422"), Some(1.0));
    assert!(
        samples.iter().all(|s| s
            .labels
            .get("route")
            .is_none_or(|r| !r.contains("/items/1"))),
        "raw paths must not become labels"
    );
    assert_eq!(types["http_requests_total"], "counter");
    assert_eq!(types["http_request_duration_seconds"], "histogram");
    assert_eq!(types["http_requests_in_flight"], "gauge");
    assert_eq!(types["callnext_middleware_poll_seconds"], "histogram");
    let count = find(
        &samples,
        "http_request_duration_seconds_count",
        &[("route", "/items/{item_id}")],
    )
    .unwrap();
    assert_eq!(count.value, 5.0);
    assert!(find(
        &samples,
        "http_request_duration_seconds_bucket",
        &[("route", "/items/{item_id}"), ("le", "+Inf")]
    )
    .is_some());
    // The scrape itself is in flight while it renders.
    let in_flight = find(&samples, "http_requests_in_flight", &[("stack", "main")]).unwrap();
    assert_eq!(in_flight.value, 1.0);
    // Every answer here had a body of known length: no body polls were timed.
    let body = find(
        &samples,
        "callnext_middleware_poll_seconds_count",
        &[("stack", "main"), ("middleware", "body")],
    )
    .unwrap();
    assert_eq!(body.value, 0.0);
    for middleware in ["another", "timing", "metrics_blocker", "app"] {
        let c = find(
            &samples,
            "callnext_middleware_poll_seconds_count",
            &[("stack", "main"), ("middleware", middleware)],
        )
        .unwrap_or_else(|| panic!("no poll histogram for {middleware}"));
        assert!(c.value >= 5.0, "{middleware}: {c:?}");
    }
    let blocked = |middleware: &str| {
        find(
            &samples,
            "callnext_blocking_events_total",
            &[("middleware", middleware)],
        )
        .map(|s| s.value)
    };
    assert_eq!(blocked("metrics_blocker"), Some(1.0));
    assert!(blocked("timing").is_none_or(|v| v == 0.0));
    running.stop().await;
}

#[tokio::test]
async fn random_404_paths_share_one_label() {
    let metrics = Metrics::new();
    let stack = Stack::new().func(pass).metrics(&metrics);
    let running = common::spawn(Server::new(), stack.service(app(&metrics))).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let url = running.url(&format!("/random/{i}/{seed:x}"));
        let res = client.get(url.parse().unwrap()).await.unwrap();
        assert_eq!(res.status(), 404);
    }
    let res = common::get(&running.url("/metrics")).await;
    let (samples, _) = parse(&res.text());
    let not_found: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "http_requests_total" && s.labels["status"] == "404")
        .collect();
    assert_eq!(not_found.len(), 1, "{not_found:?}");
    assert_eq!(not_found[0].labels["route"], "unmatched");
    assert_eq!(not_found[0].value, 1000.0);
    let series = samples
        .iter()
        .filter(|s| s.name.starts_with("http_"))
        .count();
    assert!(series < 100, "{series} series for 1000 random paths");
    running.stop().await;
}

#[tokio::test]
async fn an_application_recorder_installed_first_does_not_hide_callnexts_series() {
    // The application owns the process-global recorder; callnext never touches it.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("nothing installed a recorder before");
    metrics::counter!("app_own_counter").increment(1);

    let metrics = Metrics::new();
    let client = TestClient::new(
        Stack::new()
            .func(pass)
            .metrics(&metrics)
            .service(app(&metrics)),
    );
    assert_eq!(client.get("/items/1").await.status(), 200);
    let (samples, _) = parse(&client.get("/metrics").await.text());
    let ok = find(
        &samples,
        "http_requests_total",
        &[("route", "/items/{item_id}"), ("status", "200")],
    )
    .expect("callnext's series are scraped");
    assert_eq!(ok.value, 1.0);
    assert!(find(
        &samples,
        "callnext_middleware_poll_seconds_count",
        &[("middleware", "pass")]
    )
    .is_some());

    let global: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| key.key().name().to_owned())
        .collect();
    assert_eq!(
        global,
        ["app_own_counter"],
        "callnext wrote into the global recorder"
    );
}

#[tokio::test]
async fn two_stacks_in_one_registry_keep_their_series_apart() {
    async fn slow(req: Request, next: Next<'_>) -> Response {
        std::thread::sleep(std::time::Duration::from_millis(15));
        next.run(req).await
    }
    let metrics = Metrics::new();
    let public = Stack::new()
        .name("public")
        .push(Entry::func(slow).named("auth"))
        .metrics(&metrics);
    let admin = Stack::new()
        .name("admin")
        .push(Entry::func(pass).named("auth"))
        .metrics(&metrics);
    let public_client = TestClient::new(public.service(app(&metrics)));
    let admin_client = TestClient::new(admin.service(app(&metrics)));
    public_client.get("/items/1").await;
    for _ in 0..3 {
        admin_client.get("/items/2").await;
    }
    let (samples, _) = parse(&metrics.render());
    let value = |name: &str, stack: &str| {
        find(&samples, name, &[("stack", stack), ("middleware", "auth")]).map(|s| s.value)
    };
    assert_eq!(
        value("callnext_middleware_poll_seconds_count", "public"),
        Some(1.0)
    );
    assert_eq!(
        value("callnext_middleware_poll_seconds_count", "admin"),
        Some(3.0)
    );
    assert_eq!(value("callnext_blocking_events_total", "public"), Some(1.0));
    assert!(value("callnext_blocking_events_total", "admin").is_none_or(|v| v == 0.0));
    let requests = |stack: &str| {
        find(
            &samples,
            "http_requests_total",
            &[("stack", stack), ("status", "200")],
        )
        .map(|s| s.value)
    };
    assert_eq!(requests("public"), Some(1.0));
    assert_eq!(requests("admin"), Some(3.0));
    assert_eq!(public.blocking_report().get("auth").unwrap().events, 1);
    admin.blocking_report().assert_clean();

    // The same stack can be built again (one service per route, say); another stack cannot
    // take its name.
    assert!(public.try_service(app(&metrics)).is_ok());
    let err = Stack::new()
        .name("public")
        .metrics(&metrics)
        .try_service(app(&metrics))
        .unwrap_err();
    assert_eq!(err.kind(), ConfigErrorKind::MetricsConflict);
    assert_eq!(
        err.to_string(),
        "another stack named `public` already records into this metrics registry; give each stack its own name with `Stack::name`"
    );

    // Clones that went different ways are different stacks.
    let base = Stack::new().name("base").metrics(&metrics);
    let one = base.clone().push(Entry::func(pass).named("one"));
    let two = base.clone().push(Entry::func(pass).named("two"));
    assert!(one.try_service(app(&metrics)).is_ok());
    assert_eq!(
        two.try_service(app(&metrics)).unwrap_err().kind(),
        ConfigErrorKind::MetricsConflict
    );
}

#[test]
fn a_name_is_free_again_once_its_stack_and_services_are_gone() {
    let metrics = Metrics::new();
    let build = || {
        Stack::new()
            .func(pass)
            .metrics(&metrics)
            .try_service(app(&metrics))
    };
    let first = build().unwrap();
    assert_eq!(
        build().unwrap_err().kind(),
        ConfigErrorKind::MetricsConflict
    );
    drop(first);
    assert!(build().is_ok(), "the first stack and its service are gone");
}

#[tokio::test]
async fn boundaries_a_request_never_reached_get_no_sample() {
    async fn deny(req: Request, next: Next<'_>) -> Result<Response, HttpError> {
        if req.uri().path() == "/items/1" {
            return Err(HttpError::unauthorized("no"));
        }
        Ok(next.run(req).await)
    }
    let metrics = Metrics::new();
    let client = TestClient::new(
        Stack::new()
            .func(deny)
            .on_request("after", |_req| {})
            .metrics(&metrics)
            .service(app(&metrics)),
    );
    for _ in 0..3 {
        assert_eq!(client.get("/items/1").await.status(), 401);
    }
    assert_eq!(client.get("/items/2").await.status(), 200);
    let (samples, _) = parse(&metrics.render());
    let count = |middleware: &str| {
        find(
            &samples,
            "callnext_middleware_poll_seconds_count",
            &[("middleware", middleware)],
        )
        .unwrap()
        .value
    };
    assert_eq!(count("deny"), 4.0);
    assert_eq!(count("after"), 1.0);
    assert_eq!(count("app"), 1.0);
}

#[tokio::test]
async fn a_request_dropped_before_it_is_answered_is_counted_as_499() {
    let metrics = Metrics::new();
    let (entered_tx, entered) = tokio::sync::oneshot::channel::<()>();
    let entered_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let router = app(&metrics).route(
        "/hang",
        get(move || {
            if let Some(tx) = entered_tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            std::future::pending::<&'static str>()
        }),
    );
    let client = TestClient::new(Stack::new().func(pass).metrics(&metrics).service(router));
    let hanging = tokio::spawn({
        let client = client.clone();
        async move { client.get("/hang").await }
    });
    entered.await.unwrap();
    hanging.abort();
    let _ = hanging.await;
    let (samples, _) = parse(&metrics.render());
    let closed = find(
        &samples,
        "http_requests_total",
        &[("route", "/hang"), ("status", "499")],
    )
    .expect("the dropped request is counted");
    assert_eq!(closed.value, 1.0);
    let in_flight = find(&samples, "http_requests_in_flight", &[("stack", "main")]).unwrap();
    assert_eq!(in_flight.value, 0.0);
}
