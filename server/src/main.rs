//! The callnext server: the seed application with its two middlewares, configured by a file,
//! flags and `CALLNEXT_*` variables (flag > environment > file > default).
//!
//! run with: cargo run --release -- --help

#![allow(missing_docs)] // clap documents the arguments

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration as StdDuration;

use callnext::config::{Config, Duration, FileError, LogFormat, Size};
use callnext::TrustedProxies;
use callnext_server::seed::{self, SeedConfig};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

mod keys;

// Opt-in (`--features mimalloc`): cheaper allocation per request, but a longer latency tail and
// more memory under many connections; see the feature's note in Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a configuration mistake (as of a command-line usage error).
const CONFIG_ERROR: u8 = 2;

/// FastAPI-style async middleware, serving the seed application.
///
/// Settings come from flags, then `CALLNEXT_*` environment variables, then the configuration
/// file, then defaults. Durations are written "30s", "10ms" (a bare number keeps the flag's
/// unit), sizes "64KiB".
#[derive(Debug, Parser)]
#[command(name = "callnext", version)]
struct Args {
    /// The configuration file (TOML); see callnext.example.toml.
    #[arg(long, env = "CALLNEXT_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Check the configuration (file, flags, environment, TLS files, the stack) and exit.
    #[arg(long, env = "CALLNEXT_CHECK_CONFIG")]
    check_config: bool,
    /// Print the stack the configuration builds (secrets redacted) and exit.
    #[arg(long, env = "CALLNEXT_PRINT_STACK")]
    print_stack: bool,
    /// Print the whole configuration in effect (file, environment and flags merged, secrets
    /// redacted) as TOML and exit.
    #[arg(long, env = "CALLNEXT_PRINT_CONFIG")]
    print_config: bool,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "CALLNEXT_HOST")]
    host: Option<IpAddr>,
    /// Port to listen on [default: 8000].
    #[arg(long, env = "CALLNEXT_PORT")]
    port: Option<u16>,
    /// Serve on this Unix socket instead of host:port.
    #[arg(long, env = "CALLNEXT_UDS", value_name = "PATH")]
    uds: Option<String>,
    /// Serve on a listening socket the parent passed: 0 (stdin) or 3, 4, ... (systemd's
    /// LISTEN_FDS, also taken without this flag when systemd passes one).
    #[arg(
        long,
        env = "CALLNEXT_FD",
        value_name = "N",
        allow_negative_numbers = true
    )]
    fd: Option<i32>,
    /// Runtime worker threads (default: one per core); 1 runs a current-thread runtime.
    #[arg(long, env = "CALLNEXT_WORKERS")]
    workers: Option<usize>,
    /// Turn off the simulated async I/O (sleeps) of the seed; responses stay the same.
    #[arg(long, env = "CALLNEXT_NO_SIMULATED_IO")]
    no_simulated_io: bool,
    /// The option of the seed's struct middleware [default: default_value].
    #[arg(long, env = "CALLNEXT_SOME_OPTION")]
    some_option: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "CALLNEXT_LOG_FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Log level filter (`info`, `warn,callnext=debug`, …) [default: info]; `RUST_LOG` wins.
    #[arg(long, env = "CALLNEXT_LOG_LEVEL")]
    log_level: Option<String>,
    /// Write log lines on the request's thread (blocking on stdout) instead of a thread of
    /// their own.
    #[arg(long, env = "CALLNEXT_LOG_BLOCKING")]
    log_blocking: bool,
    /// Most connections served at once [default: 25000].
    #[arg(long, env = "CALLNEXT_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// How long a request head may take once begun; a bare number is seconds; 0 = off
    /// [default: 30s].
    #[arg(long, env = "CALLNEXT_HEADER_READ_TIMEOUT", value_parser = seconds)]
    header_read_timeout: Option<Duration>,
    /// How long an idle keep-alive connection stays open; a bare number is seconds
    /// [default: 5s].
    #[arg(long, env = "CALLNEXT_KEEP_ALIVE_TIMEOUT", value_parser = seconds)]
    keep_alive_timeout: Option<Duration>,
    /// How long in-flight requests get after SIGINT/SIGTERM; a bare number is seconds
    /// [default: 10s].
    #[arg(long, env = "CALLNEXT_DRAIN_TIMEOUT", value_parser = seconds)]
    drain_timeout: Option<Duration>,
    /// Serve HTTP/1.1 only (no h2c, no h2 over TLS).
    #[arg(long, env = "CALLNEXT_HTTP1_ONLY")]
    http1_only: bool,
    /// Most concurrent streams per HTTP/2 connection [default: 200].
    #[arg(long, env = "CALLNEXT_MAX_CONCURRENT_STREAMS")]
    max_concurrent_streams: Option<u32>,
    /// Largest request head accepted, e.g. 64KiB [default: 64KiB].
    #[arg(long, env = "CALLNEXT_MAX_HEADER_BYTES", value_parser = size)]
    max_header_bytes: Option<Size>,
    /// Listen backlog [default: 1024].
    #[arg(long, env = "CALLNEXT_BACKLOG")]
    backlog: Option<u32>,
    /// Set SO_REUSEPORT so several processes can share the port.
    #[arg(long, env = "CALLNEXT_REUSE_PORT")]
    reuse_port: bool,
    /// Comma-separated CIDRs (or `unix`) whose X-Forwarded-For / Forwarded is believed.
    #[arg(long, env = "CALLNEXT_TRUSTED_PROXIES", value_parser = proxies)]
    trusted_proxies: Option<Vec<String>>,
    /// The header the trusted proxies write: x-forwarded-for or forwarded.
    #[arg(long, env = "CALLNEXT_FORWARDED_HEADER")]
    forwarded_header: Option<String>,
    /// PEM certificate chain; with --tls-key, serves HTTPS.
    #[arg(long, env = "CALLNEXT_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CALLNEXT_TLS_KEY", value_name = "FILE")]
    tls_key: Option<String>,
    /// Serve the admin routes (metrics, health) on this address instead of inside the app.
    #[arg(long, env = "CALLNEXT_ADMIN_BIND", value_name = "ADDR")]
    admin_bind: Option<SocketAddr>,
    /// Serve the live stack page at /_callnext/ (loopback clients only, unless --admin-token
    /// is given or the admin routes have their own --admin-bind).
    #[arg(long, env = "CALLNEXT_ADMIN_PAGE")]
    admin_page: bool,
    /// Bearer token of the live stack page (at least 16 characters); a browser gives it as
    /// the password of the login it asks for.
    #[arg(
        long,
        env = "CALLNEXT_ADMIN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<callnext::config::Secret>,
    /// Path of the Prometheus metrics endpoint; `off` turns metrics off [default: /metrics].
    #[arg(long, env = "CALLNEXT_METRICS_PATH", value_parser = parse_metrics_path)]
    metrics_path: Option<String>,
    /// Add a `Server-Timing` header (per-middleware wall time) to every response.
    #[arg(long, env = "CALLNEXT_SERVER_TIMING")]
    server_timing: bool,
    /// A single poll of a middleware longer than this is logged and counted as blocking; a
    /// bare number is milliseconds [default: 10ms].
    #[arg(long, env = "CALLNEXT_BLOCKING_THRESHOLD_MS", value_parser = millis)]
    blocking_threshold_ms: Option<Duration>,
    /// Debug mode: a panic's message and location in its 500's JSON (never in production).
    #[arg(long, env = "CALLNEXT_DEBUG")]
    debug: bool,
    /// Turn off per-middleware poll timing and blocking detection.
    #[arg(long, env = "CALLNEXT_NO_INSTRUMENT")]
    no_instrument: bool,
    /// Serve `GET /demo/block?ms=N`, which blocks the runtime thread on purpose (N ≤ 1000).
    #[arg(long, env = "CALLNEXT_DEMO_BLOCKING")]
    demo_blocking: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Commands other than serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage the API keys of `[middleware.auth] api_keys`.
    Keys {
        /// The key store's URL (`sqlite://keys.db`, `postgres://...`), instead of the
        /// configuration's `api_keys`.
        #[arg(long)]
        store: Option<String>,
        #[command(subcommand)]
        action: keys::KeysAction,
    },
}

fn seconds(value: &str) -> Result<Duration, String> {
    Duration::parse_flag(value, StdDuration::from_secs(1))
}

fn millis(value: &str) -> Result<Duration, String> {
    Duration::parse_flag(value, StdDuration::from_millis(1))
}

fn size(value: &str) -> Result<Size, String> {
    value.parse()
}

fn proxies(value: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    TrustedProxies::parse(&list).map_err(|err| err.to_string())?;
    Ok(list)
}

fn parse_log_format(value: &str) -> Result<LogFormat, String> {
    match value {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("expected `text` or `json`, got `{value}`")),
    }
}

fn parse_metrics_path(path: &str) -> Result<String, String> {
    if path == "off" || path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Err(format!("must start with `/` or be `off`, got `{path}`"))
    }
}

/// Whether a switch was given as a flag or in the environment (not left at its default).
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    ) && matches.get_flag(id)
}

/// The file (or defaults), then the environment and flags over it.
fn configure(args: &Args, matches: &ArgMatches) -> Result<(Config, SeedConfig), FileError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path, &["seed"])?,
        None => Config::default(),
    };
    let mut seed: SeedConfig = config.section("seed")?;
    let s = &mut config.server;
    macro_rules! set {
        ($($field:ident => $target:expr),* $(,)?) => {
            $(if let Some(value) = args.$field.clone() { $target = value; })*
        };
    }
    set! {
        host => s.host,
        port => s.port,
        uds => s.uds,
        fd => s.fd,
        workers => s.workers,
        max_connections => s.max_connections,
        header_read_timeout => s.header_read_timeout,
        keep_alive_timeout => s.keep_alive_timeout,
        drain_timeout => s.drain_timeout,
        max_concurrent_streams => s.max_concurrent_streams,
        max_header_bytes => s.max_header_bytes,
        backlog => s.backlog,
        trusted_proxies => s.trusted_proxies,
        forwarded_header => s.forwarded_header,
        tls_cert => s.tls_cert,
        tls_key => s.tls_key,
        log_format => config.log.format,
        log_level => config.log.level,
        metrics_path => config.admin.metrics_path,
        admin_token => config.admin.token,
        blocking_threshold_ms => config.stack.blocking_threshold,
        some_option => seed.some_option,
    }
    if let Some(bind) = args.admin_bind {
        config.admin.bind = bind.to_string();
    }
    if given(matches, "admin_page") {
        config.admin.page = true;
    }
    if given(matches, "http1_only") {
        config.server.http1_only = true;
    }
    if given(matches, "reuse_port") {
        config.server.reuse_port = true;
    }
    if given(matches, "server_timing") {
        config.stack.server_timing = true;
    }
    if given(matches, "debug") {
        config.stack.debug = true;
    }
    if given(matches, "no_instrument") {
        config.stack.instrument = false;
    }
    if given(matches, "log_blocking") {
        config.log.non_blocking = false;
    }
    if given(matches, "no_simulated_io") {
        seed.simulated_io = false;
    }
    config.validate()?;
    config.set_section("seed", &seed)?;
    Ok((config, seed))
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let (config, seed) = match configure(&args, &matches) {
        Ok(configured) => configured,
        Err(err) => return config_error(&err),
    };
    if let Some(Command::Keys { store, action }) = args.command {
        return keys::run(&config, store, action);
    }
    let registry = seed::registry(&seed);
    let lines = match config.describe_stack(&registry) {
        Ok(lines) => lines,
        Err(err) => return config_error(&err),
    };
    // TLS files are read (and checked) here, before anything is served.
    if let Err(err) = config.server() {
        return config_error(&err);
    }
    if args.print_config {
        match config.to_toml_with(&registry) {
            Ok(text) => print!("{text}"),
            Err(err) => return config_error(&err),
        }
        return ExitCode::SUCCESS;
    }
    if args.print_stack {
        for line in &lines {
            println!("{line}");
        }
        println!("  -  app                seed             endpoint");
        if let Ok(stack) = config.stack(&registry) {
            for warning in stack.lint() {
                println!("warning: {warning} [{}]", warning.rule());
            }
        }
        return ExitCode::SUCCESS;
    }
    if args.check_config {
        let origin = args
            .config
            .as_ref()
            .map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        println!("configuration ok ({origin}): {} middlewares", lines.len());
        return ExitCode::SUCCESS;
    }
    let mut router = seed::router(&seed);
    let sessions_on = config.middleware.iter().any(|(name, table)| {
        table.get("kind").and_then(|k| k.as_str()).unwrap_or(name) == "session"
    });
    if sessions_on {
        router = router.merge(seed::session_demo_router());
    }
    if args.demo_blocking {
        router = router.merge(seed::demo_blocking_router());
    }
    let simulated_io = if seed.simulated_io { "on" } else { "off" };
    let demo_blocking = args.demo_blocking;
    // SIGHUP (and POST /admin/reload with the admin token) reads the file again, with the
    // environment and flags over it as at the start.
    let reread = {
        let matches = matches.clone();
        move || {
            let args = Args::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
            configure(&args, &matches).map(|(config, _)| config)
        }
    };
    let mut serve = config.serve(router).registry(registry);
    // Without a file there is nothing to read again (and no swap to pay for per request).
    if args.config.is_some() {
        serve = serve.reload(reread);
    }
    let served = serve
        .on_listening(move |_| {
            tracing::info!("seed: simulated I/O {simulated_io}");
            if demo_blocking {
                tracing::warn!("serving /demo/block, which blocks the runtime on purpose");
            }
        })
        .run();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.get_ref().is_some_and(|inner| inner.is::<FileError>()) => {
            eprintln!("error: {err}");
            ExitCode::from(CONFIG_ERROR)
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(err: &FileError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(CONFIG_ERROR)
}
