//! The configuration file: every kind of mistake is one line naming the file, line and key;
//! the example file holds every default; the stack is built from `[stack]` and
//! `[middleware.*]` in the given or the recommended order.

use callnext::config::{
    AdminSettings, Config, LogSettings, Registry, ServerSettings, StackSettings, TelemetrySettings,
};
use callnext::{Entry, MiddlewareKind, Next, Request, Response, TestClient};

fn error(text: &str) -> String {
    Config::parse(text, "app.toml", &["seed"])
        .unwrap_err()
        .to_string()
}

#[test]
fn every_kind_of_mistake_is_one_line_with_file_line_and_key() {
    let cases = [
        (
            "[server]\nport = 80\n\n[sever]\nport = 1\n",
            "app.toml:4: `sever`: unknown table, expected one of `server`, `log`, `admin`, `stack`, `middleware`, `telemetry`, `seed`",
        ),
        (
            "[log]\nlevel = \"info\"\nformt = \"json\"\n",
            "app.toml:3: `log.formt`: unknown field `formt`, expected one of `level`, `format`, `non_blocking`",
        ),
        (
            "[server]\nport = \"eighty\"\n",
            "app.toml:2: `server.port`: invalid type: string \"eighty\", expected u16",
        ),
        (
            "[server]\nport = 70000\n",
            "app.toml:2: `server.port`: invalid value: integer `70000`, expected u16",
        ),
        (
            "[server]\ndrain_timeout = \"10\"\n",
            "app.toml:2: `server.drain_timeout`: expected a duration with a unit such as \"30s\" or \"10ms\", got \"10\"",
        ),
        (
            "[server]\nmax_header_bytes = \"lots\"\n",
            "app.toml:2: `server.max_header_bytes`: expected a size such as \"1MB\" or \"64KiB\", got \"lots\"",
        ),
        (
            "[log]\nformat = \"xml\"\n",
            "app.toml:2: `log.format`: unknown variant `xml`, expected `text` or `json`",
        ),
        (
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]\n",
            "app.toml:2: `server.trusted_proxies`: invalid `trusted_proxies`: `proxy.local` is not an IP address or CIDR network",
        ),
        (
            "[server]\nforwarded_header = \"x-real-ip\"\n",
            "app.toml:2: `server.forwarded_header`: invalid `forwarded_header`: expected `x-forwarded-for` or `forwarded`, got `x-real-ip`",
        ),
        (
            "[server]\ntls_cert = \"cert.pem\"\n",
            "app.toml: `server.tls_key`: `tls_cert` and `tls_key` go together: set both or neither",
        ),
        (
            "[admin]\nbind = \"localhost\"\n",
            "app.toml:2: `admin.bind`: expected an address such as \"127.0.0.1:9000\", got \"localhost\"",
        ),
        (
            "[admin]\nmetrics_path = \"metrics\"\n",
            "app.toml:2: `admin.metrics_path`: invalid `metrics_path`: must start with `/` or be `off`, got `metrics`",
        ),
        (
            "[stack]\nblocking_threshold = \"0s\"\n",
            "app.toml:2: `stack.blocking_threshold`: must be greater than zero (every poll would be blocking)",
        ),
        ("[server\nport = 1\n", "app.toml:1: unclosed table, expected `]`"),
        (
            "[seed]\nx = 1\n[seed]\ny = 2\n",
            "app.toml:3: duplicate key",
        ),
    ];
    for (text, expected) in cases {
        let message = error(text);
        assert_eq!(message, expected, "for {text:?}");
        assert!(!message.contains('\n'));
    }
}

#[test]
fn a_missing_file_names_itself() {
    let err = Config::load("no-such-dir/callnext.toml", &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no-such-dir/callnext.toml: cannot read the configuration file: "),
        "{err}"
    );
}

#[test]
fn the_example_file_loads_and_holds_every_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/callnext.example.toml");
    let config = Config::load(path, &["seed"]).unwrap();
    assert_eq!(config.server, ServerSettings::default());
    assert_eq!(config.log, LogSettings::default());
    assert_eq!(config.admin, AdminSettings::default());
    assert_eq!(config.stack, StackSettings::default());
    assert_eq!(config.telemetry, TelemetrySettings::default());
    assert!(config.middleware.is_empty());

    // Every key of every table is written out in it (not only defaulted).
    let text = std::fs::read_to_string(path).unwrap();
    let written: toml::Table = toml::from_str(&text).unwrap();
    let defaults: toml::Table = toml::from_str(&Config::default().to_toml()).unwrap();
    for (table, keys) in &defaults {
        let Some(keys) = keys.as_table() else {
            continue;
        };
        for key in keys.keys() {
            let present = written
                .get(table)
                .and_then(|t| t.as_table())
                .is_some_and(|t| t.contains_key(key));
            // `[stack] order` has no default value to write; it is shown commented out.
            let commented = text.contains(&format!("# {key} = "));
            assert!(
                present || commented,
                "`{table}.{key}` is not in the example file"
            );
        }
    }
}

async fn audit(req: Request, next: Next<'_>) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut().insert("x-audit", "1".parse().unwrap());
    res
}

fn registry() -> Registry {
    Registry::new()
        .middleware("audit", |settings| {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Audit {
                #[allow(dead_code)]
                level: Option<String>,
            }
            let _: Audit = settings.parse()?;
            Ok(Entry::func(audit))
        })
        .middleware("tenant", |_| Ok(Entry::func(audit)))
}

fn names(text: &str) -> Result<Vec<String>, String> {
    let config = Config::parse(text, "app.toml", &[]).map_err(|e| e.to_string())?;
    let stack = config.stack(&registry()).map_err(|e| e.to_string())?;
    Ok(stack.describe().into_iter().map(|e| e.name).collect())
}

#[test]
fn order_builds_the_stack_and_its_mistakes_are_named() {
    assert_eq!(
        names("[stack]\norder = [\"tenant\", \"t\", \"audit\"]\n[middleware.t]\nkind = \"process_time\"\n"),
        Ok(vec!["tenant".into(), "t".into(), "audit".into()])
    );
    // Without order: callnext's kinds first, then the application's in registration order.
    assert_eq!(
        names("[middleware.audit]\nlevel = \"x\"\n[middleware.pt]\nkind = \"process_time\"\n"),
        Ok(vec!["pt".into(), "audit".into(), "tenant".into()])
    );
    let mistakes = [
        (
            "[stack]\norder = [\"audit\", \"bouncer\"]\n",
            "app.toml:2: `stack.order`: `bouncer` has no [middleware.bouncer] table and is not a middleware of the application (`audit`, `tenant`)",
        ),
        (
            "[stack]\norder = [\"process_time\"]\n",
            "app.toml:2: `stack.order`: `process_time` has no [middleware.process_time] table",
        ),
        (
            "[stack]\norder = [\"audit\"]\n[middleware.pt]\nkind = \"process_time\"\n",
            "app.toml:3: `middleware.pt`: this table is not in [stack] order; add it there or remove the table",
        ),
        (
            "[stack]\norder = [\"audit\", \"audit\"]\n",
            "app.toml:2: `stack.order`: `audit` is listed twice",
        ),
        (
            "[middleware.limiter]\nkind = 3\n",
            "app.toml:2: `middleware.limiter.kind`: expected a string, got integer",
        ),
        (
            "[middleware.audit]\nlevle = \"x\"\n",
            "app.toml:2: `middleware.audit.levle`: unknown field `levle`, expected `level`",
        ),
        (
            "[middleware.pt]\nkind = \"process_time\"\nheader = \"bad header\"\n",
            "app.toml:3: `middleware.pt.header`: \"bad header\" is not a header name",
        ),
    ];
    for (text, expected) in mistakes {
        assert_eq!(names(text), Err(expected.to_owned()), "for {text:?}");
    }
    // Every kind is listed, callnext's and the application's.
    let err = names("[middleware.limiter]\nkind = \"leaky_bucket\"\n").unwrap_err();
    assert!(
        err.starts_with("app.toml:1: `middleware.limiter`: unknown middleware kind `leaky_bucket`, expected one of `request_id`, "),
        "{err}"
    );
    assert!(err.ends_with("`audit`, `tenant`"), "{err}");
}

#[tokio::test]
async fn the_built_stack_runs_with_the_files_settings() {
    let text = r#"
[server]
trusted_proxies = ["127.0.0.1"]

[stack]
order = ["timing", "audit"]
name = "edge"

[middleware.timing]
kind = "process_time"
header = "x-took"
"#;
    let config = Config::parse(text, "app.toml", &[]).unwrap();
    let lines = config.describe_stack(&registry()).unwrap();
    assert_eq!(lines[0].kind, "process_time");
    assert_eq!(lines[0].runs_as, MiddlewareKind::Hook);
    assert_eq!(lines[0].settings, ["header=\"x-took\""]);
    assert_eq!(lines[1].runs_as, MiddlewareKind::Function);

    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|ip: callnext::ClientIp| async move { ip.to_string() }),
    );
    let client = TestClient::new(config.stack(&registry()).unwrap().service(app));
    let res = client
        .get("/")
        .header("x-forwarded-for", "203.0.113.1")
        .await;
    assert_eq!(res.text(), "203.0.113.1");
    assert!(res.headers().contains_key("x-took"));
    assert_eq!(res.headers()["x-audit"], "1");
}

#[tokio::test]
async fn the_session_cookie_takes_its_attributes_from_the_file() {
    let secret = "s".repeat(64);
    let text = format!(
        "[middleware.session]\nsecret = \"{secret}\"\ncookie_max_age = \"1h\"\ncookie_path = \"/app\"\ncookie_domain = \"example.com\"\n"
    );
    let config = Config::parse(&text, "app.toml", &[]).unwrap();
    let app = axum::Router::new().route(
        "/app",
        axum::routing::post(
            |session: callnext::middleware::session::Session| async move {
                session.insert("k", &1).await.map(|()| "ok")
            },
        ),
    );
    let client = TestClient::new(config.stack(&registry()).unwrap().service(app));
    let res = client.post("/app").await;
    let set = res.header("set-cookie").unwrap();
    for part in ["Max-Age=3600", "Path=/app", "Domain=example.com"] {
        assert!(set.contains(part), "{set}");
    }
    let text = format!("[middleware.session]\nsecret = \"{secret}\"\ncookie_path = \"app\"\n");
    assert_eq!(
        Config::parse(&text, "app.toml", &[])
            .and_then(|c| c.stack(&registry()).map(drop))
            .unwrap_err()
            .to_string(),
        "app.toml:3: `middleware.session.cookie_path`: invalid `cookie_path`: `app` is not a cookie path: it starts with `/`, without spaces or `;`"
    );
}

#[derive(serde::Deserialize, Default, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Seed {
    simulated_io: bool,
}

#[test]
fn application_sections_are_read_strictly() {
    let config = Config::parse("[seed]\nsimulated_io = true\n", "app.toml", &["seed"]).unwrap();
    assert_eq!(
        config.section::<Seed>("seed").unwrap(),
        Seed { simulated_io: true }
    );
    let config = Config::parse("[seed]\nsimulated = true\n", "app.toml", &["seed"]).unwrap();
    assert_eq!(
        config.section::<Seed>("seed").unwrap_err().to_string(),
        "app.toml:2: `seed.simulated`: unknown field `simulated`, expected `simulated_io`"
    );
    // Without the section: its defaults.
    let config = Config::parse("", "app.toml", &["seed"]).unwrap();
    assert_eq!(config.section::<Seed>("seed").unwrap(), Seed::default());
}

/// A user's app served from a file in one call, in a process of its own (the log subscriber
/// `[log]` installs is the process's): `[server]`, `[admin] page`, `[log] format = "json"` and
/// two batteries, checked from outside as a client and a log reader would.
#[cfg(feature = "server")]
#[test]
fn a_users_app_is_served_from_a_file_in_one_call() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    let path = std::env::temp_dir().join(format!("callnext-serve-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"
[server]
host = "127.0.0.1"
port = 0
max_header_bytes = "8KiB"
drain_timeout = "5s"

[log]
format = "json"
level = "info"

[admin]
page = true

[middleware.request_id]
[middleware.security_headers]
"#,
    )
    .unwrap();
    /// The child, killed if the test fails before stopping it.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Child(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "served_from_a_file",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CALLNEXT_TEST_SERVE_FILE", &path)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut logs: Vec<serde_json::Value> = Vec::new();
    let mut read_log = |out: &mut String| loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the app's output ended: {out}"
        );
        out.push_str(&line);
        // libtest's own lines ("running 1 test") are not JSON, and its "test ... " has no
        // line end: the first log line follows it.
        let json = line.find('{').map_or("", |at| &line[at..]);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(json) {
            break value;
        }
    };
    let mut out = String::new();
    let addr = loop {
        let line = read_log(&mut out);
        logs.push(line.clone());
        if let Some(url) = line["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening on http://"))
        {
            break url.to_owned();
        }
    };
    let request = |head: &str| {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream
            .write_all(format!("{head}Host: localhost\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.to_ascii_lowercase()
    };

    // The stack of the file in front of the app.
    let home = request("GET / HTTP/1.1\r\n");
    assert!(home.starts_with("http/1.1 200"), "{home}");
    assert!(home.ends_with("hello world"), "{home}");
    assert!(home.contains("\r\nx-request-id: "), "{home}");
    assert!(
        home.contains("\r\nx-content-type-options: nosniff"),
        "{home}"
    );
    // `[admin] page = true`: the live page, for this loopback client, with the admin routes.
    let page = request("GET /_callnext/ HTTP/1.1\r\n");
    assert!(page.starts_with("http/1.1 200"), "{page}");
    assert!(page.contains("text/html"), "{page}");
    let ready = request("GET /health/ready HTTP/1.1\r\n");
    assert!(ready.starts_with("http/1.1 200"), "{ready}");
    #[cfg(feature = "prometheus")]
    {
        let metrics = request("GET /metrics HTTP/1.1\r\n");
        assert!(metrics.contains("callnext_"), "{metrics}");
    }
    // `[server] max_header_bytes`.
    let big = request(&format!(
        "GET / HTTP/1.1\r\nx-big: {}\r\n",
        "a".repeat(10_000)
    ));
    assert!(big.starts_with("http/1.1 431"), "{big}");

    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        let line = read_log(&mut out);
        let stopped = line["message"] == "stopped";
        logs.push(line);
        if stopped {
            break;
        }
    }
    assert!(child.0.wait().unwrap().success(), "{out}");
    let _ = std::fs::remove_file(&path);

    // `[log] format = "json"`: every line an object with a level; the stack named entry by entry.
    assert!(logs.iter().all(|l| l["level"].is_string()), "{out}");
    let named: Vec<&str> = logs
        .iter()
        .filter(|l| l["message"] == "middleware")
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(named, ["request_id", "security_headers"], "{out}");
    assert!(
        logs.iter().any(|l| l["message"] == "live stack page on"),
        "{out}"
    );
}

/// The app of `a_users_app_is_served_from_a_file_in_one_call`, run in its child process; it
/// does nothing in a plain test run.
#[cfg(feature = "server")]
#[test]
fn served_from_a_file() {
    let Some(path) = std::env::var_os("CALLNEXT_TEST_SERVE_FILE") else {
        return;
    };
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hello World" }));
    Config::load(path, &[]).unwrap().serve(app).run().unwrap();
}
