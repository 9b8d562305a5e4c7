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
