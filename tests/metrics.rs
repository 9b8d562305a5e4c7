//! The Prometheus endpoint, scraped over HTTP and parsed.

mod common;

use std::collections::BTreeMap;

use callnext::seed::{self, SeedConfig};
use callnext::serve::Server;
use callnext::{ConfigError, Entry, Next, Request, Response, Stack};

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

#[tokio::test]
async fn scrape_over_http() {
    let config = SeedConfig {
        simulated_io: false,
        ..SeedConfig::default()
    };
    let stack = seed::stack(&config)
        .push(Entry::func(blocks).named("metrics_blocker"))
        .metrics_endpoint("/metrics")
        .unwrap();
    let running = common::spawn(Server::new(), stack.service(seed::router(&config))).await;
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

    let ok = find(
        &samples,
        "http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/items/{item_id}"),
            ("status", "200"),
        ],
    )
    .expect("requests total for the template");
    assert!(ok.value >= 3.0, "{ok:?}");
    assert!(find(
        &samples,
        "http_requests_total",
        &[("route", "/items/{item_id}"), ("status", "404")]
    )
    .is_some());
    assert!(find(
        &samples,
        "http_requests_total",
        &[("route", "/items/{item_id}"), ("status", "422")]
    )
    .is_some());
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
    assert!(count.value >= 5.0);
    assert!(find(
        &samples,
        "http_request_duration_seconds_bucket",
        &[("route", "/items/{item_id}"), ("le", "+Inf")]
    )
    .is_some());
    assert!(find(&samples, "http_requests_in_flight", &[]).is_some());
    for middleware in ["another", "timing", "metrics_blocker", "app"] {
        let c = find(
            &samples,
            "callnext_middleware_poll_seconds_count",
            &[("middleware", middleware)],
        )
        .unwrap_or_else(|| panic!("no poll histogram for {middleware}"));
        assert!(c.value >= 5.0);
    }
    let blocked = find(
        &samples,
        "callnext_blocking_events_total",
        &[("middleware", "metrics_blocker")],
    )
    .expect("blocking counter");
    assert!(blocked.value >= 1.0);
    assert!(find(
        &samples,
        "callnext_blocking_events_total",
        &[("middleware", "timing")]
    )
    .is_none());
    running.stop().await;
}

#[tokio::test]
async fn random_404_paths_share_one_label() {
    let config = SeedConfig {
        simulated_io: false,
        ..SeedConfig::default()
    };
    let stack = seed::stack(&config).metrics_endpoint("/metrics").unwrap();
    let running = common::spawn(Server::new(), stack.service(seed::router(&config))).await;
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
        // The other test in this binary shares the global recorder; its 404s are on a template.
        .filter(|s| {
            s.name == "http_requests_total"
                && s.labels["status"] == "404"
                && s.labels["route"] != "/items/{item_id}"
        })
        .collect();
    assert_eq!(not_found.len(), 1, "{not_found:?}");
    assert_eq!(not_found[0].labels["route"], "unmatched");
    assert!(not_found[0].value >= 1000.0);
    let series = samples
        .iter()
        .filter(|s| s.name.starts_with("http_"))
        .count();
    assert!(series < 100, "{series} series for 1000 random paths");
    running.stop().await;
}

#[test]
fn metrics_path_must_be_absolute() {
    let err = Stack::new().metrics_endpoint("metrics").unwrap_err();
    assert!(matches!(err, ConfigError::InvalidSetting { .. }));
    assert_eq!(
        err.to_string(),
        "invalid `metrics_endpoint`: the path must start with `/`, got `metrics`"
    );
}
