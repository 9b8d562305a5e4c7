//! The ceiling of the simulated-I/O concurrency test for any tokio server.
//!
//! `CONNECTIONS` tasks on one current-thread runtime each repeat the seed's awaits (10 ms, then
//! 100 ms, then 5 ms) for `--seconds`, with no HTTP at all. tokio's timer works in whole
//! milliseconds and rounds each deadline up, so every sleep overshoots; the mean time per
//! "request" here is the lowest any tokio-based server can show in `bench/peers/run.sh`'s
//! 1,000-connection test, and 115 ms / that mean is its best "% of ideal".
//!
//! ```sh
//! cargo run --release --manifest-path bench/peers/Cargo.toml -p timer-ceiling -- --tasks 1000
//! ```

use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Concurrent tasks (the benchmark's connections).
    #[arg(long, default_value_t = 1000)]
    tasks: usize,
    /// How long to run.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
}

const SLEEPS_MS: [u64; 3] = [10, 100, 5];

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let mut latencies_ms = runtime.block_on(async {
        let end = Instant::now() + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = (0..args.tasks)
            .map(|_| {
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < end {
                        let start = Instant::now();
                        for ms in SLEEPS_MS {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        latencies.push(start.elapsed().as_secs_f64() * 1e3);
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("a timer task"));
        }
        all
    });
    latencies_ms.sort_by(f64::total_cmp);
    let n = latencies_ms.len();
    let mean = latencies_ms.iter().sum::<f64>() / n as f64;
    let ideal_ms: u64 = SLEEPS_MS.iter().sum();
    println!(
        "tasks={} samples={n} mean={mean:.2} ms p50={:.2} ms p99={:.2} ms best % of ideal={:.1}%",
        args.tasks,
        latencies_ms[n / 2],
        latencies_ms[n * 99 / 100],
        100.0 * ideal_ms as f64 / mean,
    );
}
