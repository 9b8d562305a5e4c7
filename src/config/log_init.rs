//! The process's log subscriber as `[log]` describes it, set up by [`Config::serve`].

use std::io;

use super::{Config, LogFormat};
use crate::middleware::access_log::{LineWriter, Sink};

/// Lines the log thread holds before it drops (and counts) them.
const LOG_QUEUE: usize = 65_536;

pub(super) fn log_dropped(log: &LineWriter) {
    let dropped = log.dropped();
    if dropped > 0 {
        tracing::warn!(dropped, "log lines dropped: the log writer fell behind");
    }
}

/// Installs the `[log]` subscriber as the global one, if none is set yet. With
/// `non_blocking` (the default), lines are written by a thread of their own through the access
/// log's kind of queue, so a request never waits on stdout. (tracing-appender's non-blocking
/// writer did the same with a channel that wakes its thread for every line: bench/batteries.sh
/// measured it at more CPU per request than writing to stdout directly.)
pub(super) fn init_tracing(config: &Config) -> Option<LineWriter> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = config
        .log
        .non_blocking
        .then(|| LineWriter::new(&Sink::Stdout, LOG_QUEUE).ok())
        .flatten();
    let writer = match &lines {
        Some(lines) => {
            let lines = lines.clone();
            BoxMakeWriter::new(move || lines.clone())
        }
        None => BoxMakeWriter::new(io::stdout),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stdout()));
    let installed = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_err() {
        // The application's own subscriber stays; this writer's thread is not needed.
        if let Some(lines) = lines {
            lines.close();
        }
        tracing::debug!("a log subscriber is already set: [log] is left to it");
        return None;
    }
    lines
}
