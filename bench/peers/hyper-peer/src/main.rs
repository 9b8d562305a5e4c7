//! The floor of the benchmark: bare hyper 1, HTTP/1 only, one current-thread
//! tokio runtime, answering every request with 200 `{"message":"Hello World"}`.
//! No routing, no middleware, no simulated I/O (`--no-simulated-io` is
//! accepted so every peer takes the same flags).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Command-line options.
#[derive(Debug, Parser)]
#[command(about = "Bare hyper 1 HTTP/1 server (benchmark floor)")]
struct Args {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Accepted for symmetry with the other peers; this server never sleeps.
    #[arg(long)]
    no_simulated_io: bool,
}

const BODY: &[u8] = br#"{"message":"Hello World"}"#;

async fn hello(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

async fn serve(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. EMFILE: back off instead of spinning or exiting.
                eprintln!("hyper-peer: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(hello))
                .await;
        });
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let _ = args.no_simulated_io;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
        eprintln!("hyper-peer listening on http://{}", listener.local_addr()?);
        serve(listener).await;
        Ok(())
    })
}
