//! Where the records go ([`Sink`]: stdout, a rotated file, a writer, an HTTP receiver) and
//! what a request does when the queue is full ([`OnFull`]); the sink opened and checked when
//! the log is built.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendCount, AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate, TimeFrequency};

use crate::ConfigError;

/// Where the writer thread sends lines.
pub(super) enum Out {
    Write(Box<dyn Write + Send>),
    #[cfg(feature = "log-shipping")]
    Http(Box<super::ship::Shipper>),
}

/// When a log file is rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Rotate {
    /// Never (the default).
    #[default]
    Never,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// When the file passes this many bytes.
    Size(u64),
}

/// Any writer, shared (a socket, a pipe, a test's buffer); the writer thread writes to it.
#[derive(Clone)]
pub struct SharedWriter(pub Arc<Mutex<dyn Write + Send>>);

impl std::fmt::Debug for SharedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedWriter")
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush()
    }
}

/// Where the records go.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Sink {
    /// Standard output (the default).
    #[default]
    Stdout,
    /// A file, rotated, keeping at most `max_files` old ones.
    File {
        /// The file's path.
        path: PathBuf,
        /// When it is rotated.
        rotate: Rotate,
        /// How many rotated files are kept.
        max_files: usize,
    },
    /// A writer of the application's.
    Writer(SharedWriter),
    /// An HTTP receiver (Vector, Loki, ...): batched, gzipped, retried (feature
    /// `log-shipping`).
    #[cfg(feature = "log-shipping")]
    Http(super::HttpSink),
}

/// What a request does when the queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFull {
    /// Its record is dropped and counted (the default): requests never wait on the log.
    #[default]
    Drop,
    /// The request waits, before it runs, until the writer has made room: no record is lost,
    /// and a log that cannot keep up slows the service down instead.
    Block,
}

pub(super) fn open(sink: &Sink) -> Result<Out, ConfigError> {
    match sink {
        #[cfg(feature = "log-shipping")]
        Sink::Http(http) => Ok(Out::Http(Box::new(http.start()?))),
        other => open_writer(other).map(Out::Write),
    }
}

pub(super) fn open_writer(sink: &Sink) -> Result<Box<dyn Write + Send>, ConfigError> {
    match sink {
        Sink::Stdout => Ok(Box::new(io::stdout())),
        Sink::Writer(writer) => Ok(Box::new(writer.clone())),
        #[cfg(feature = "log-shipping")]
        Sink::Http(_) => unreachable!("opened by `open`"),
        Sink::File {
            path,
            rotate,
            max_files,
        } => {
            check_writable(path)?;
            let file: Box<dyn Write + Send> = match rotate {
                Rotate::Never => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|err| cannot_open(path, &err))?,
                ),
                Rotate::Size(bytes) => Box::new(FileRotate::new(
                    path,
                    AppendCount::new(*max_files),
                    ContentLimit::BytesSurpassed(usize::try_from(*bytes).unwrap_or(usize::MAX)),
                    Compression::None,
                    None,
                )),
                Rotate::Hourly | Rotate::Daily => {
                    let every = if *rotate == Rotate::Hourly {
                        TimeFrequency::Hourly
                    } else {
                        TimeFrequency::Daily
                    };
                    Box::new(FileRotate::new(
                        path,
                        AppendTimestamp::default(FileLimit::MaxFiles(*max_files)),
                        ContentLimit::Time(every),
                        Compression::None,
                        None,
                    ))
                }
            };
            Ok(file)
        }
    }
}

pub(super) fn cannot_open(path: &Path, err: &io::Error) -> ConfigError {
    ConfigError::invalid("path", format!("cannot open {}: {err}", path.display()))
}

/// The file can be opened for appending (the rotating writer would fail later, silently).
pub(super) fn check_writable(path: &Path) -> Result<(), ConfigError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|err| cannot_open(path, &err))
}
