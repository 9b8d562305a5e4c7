//! The callnext server: the seed application with its two middlewares.
//!
//! run with: cargo run --release -- --help

#![allow(missing_docs)] // clap documents the arguments

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use callnext::metrics::Metrics;
use callnext::serve::{shutdown_signal, Server};
use callnext_server::seed::{self, SeedConfig};
use clap::{Parser, ValueEnum};

// Opt-in (`--features mimalloc`): cheaper allocation per request, but a longer latency tail and
// more memory under many connections; see the feature's note in Cargo.toml.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// FastAPI-style async middleware, serving the seed application.
#[derive(Debug, Parser)]
#[command(name = "callnext", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Runtime worker threads (default: the number of cores); 1 runs a current-thread runtime.
    #[arg(long)]
    workers: Option<usize>,
    /// Turn off the simulated async I/O (sleeps) of the seed; responses stay the same.
    #[arg(long)]
    no_simulated_io: bool,
    /// The option of the seed's struct middleware.
    #[arg(long, env = "CALLNEXT_SOME_OPTION", default_value = "default_value")]
    some_option: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level filter (`info`, `warn`, `callnext=debug`, …); `RUST_LOG` overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Most connections served at once.
    #[arg(long, default_value_t = 25_000)]
    max_connections: usize,
    /// Seconds a connection may go without a complete request head while none of its requests
    /// is being answered (slow or idle clients are closed after 1 to 1.5 times this); 0 = off.
    #[arg(long, default_value_t = 30)]
    header_read_timeout: u64,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,
    /// Serve HTTP/1.1 only (no h2c).
    #[arg(long)]
    http1_only: bool,
    /// Add a `Server-Timing` header (per-middleware wall time) to every response.
    #[arg(long)]
    server_timing: bool,
    /// A single poll of a middleware longer than this is logged and counted as blocking.
    #[arg(long, default_value_t = 10)]
    blocking_threshold_ms: u64,
    /// Path of the Prometheus metrics endpoint, a route of the app behind the stack; `off`
    /// turns metrics off.
    #[arg(long, default_value = "/metrics", value_parser = parse_metrics_path)]
    metrics_path: String,
    /// Turn off per-middleware poll timing and blocking detection.
    #[arg(long)]
    no_instrument: bool,
    /// Serve `GET /demo/block?ms=N`, which blocks the runtime thread on purpose (N ≤ 1000).
    #[arg(long)]
    demo_blocking: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(&args);

    // One worker needs no work-stealing scheduler: the current-thread runtime is cheaper.
    let mut runtime = match args.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers.max(1));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let config = SeedConfig {
        simulated_io: !args.no_simulated_io,
        some_option: args.some_option.clone(),
    };
    let mut stack = seed::stack(&config)
        .instrument(!args.no_instrument)
        .server_timing(args.server_timing)
        .blocking_threshold(Duration::from_millis(args.blocking_threshold_ms));
    let mut router = seed::router(&config);
    if args.metrics_path != "off" {
        // The binary owns the registry and mounts it as a route, behind the stack.
        let metrics = Metrics::new();
        stack = stack.metrics(&metrics);
        router = router.route(&args.metrics_path, metrics.route());
    }
    for entry in stack.describe() {
        tracing::info!(index = entry.index, name = %entry.name, kind = %entry.kind, "middleware");
    }
    if args.demo_blocking {
        tracing::warn!("serving /demo/block, which blocks the runtime on purpose");
        router = router.merge(seed::demo_blocking_router());
    }
    let service = stack
        .try_service(router)
        .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err.to_string()))?;

    let server = Server::new()
        .max_connections(args.max_connections)
        .header_read_timeout(Duration::from_secs(args.header_read_timeout))
        .drain_timeout(Duration::from_secs(args.drain_timeout))
        .http2(!args.http1_only)
        .bind(SocketAddr::new(args.host, args.port))
        .await?;
    tracing::info!(
        "listening on http://{} (simulated I/O {})",
        server.local_addr()?,
        if config.simulated_io { "on" } else { "off" }
    );
    server.serve(service, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

fn parse_metrics_path(path: &str) -> Result<String, String> {
    if path == "off" || path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Err(format!("must start with `/` or be `off`, got `{path}`"))
    }
}

fn init_tracing(args: &Args) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
