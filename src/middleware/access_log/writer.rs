//! The access log's writer: a thread of its own behind a bounded queue, so requests never
//! wait on log I/O; records that do not fit are dropped and counted.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use file_rotate::compression::Compression;
use file_rotate::suffix::{AppendCount, AppendTimestamp, FileLimit};
use file_rotate::{ContentLimit, FileRotate, TimeFrequency};

use crate::ConfigError;

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
}

enum Message {
    Line(String),
    Flush(mpsc::Sender<()>),
    Stop,
}

/// What the hook and the writer share.
#[derive(Debug)]
pub(super) struct Queue {
    sender: SyncSender<Message>,
    dropped: AtomicU64,
    dropped_total: AtomicU64,
    written: Arc<AtomicU64>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Queue {
    pub(super) fn start(sink: &Sink, capacity: usize) -> Result<Arc<Self>, ConfigError> {
        let out = open(sink)?;
        let (sender, receiver) = mpsc::sync_channel(capacity.max(1));
        let queue = Arc::new(Self {
            sender,
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            written: Arc::default(),
            thread: Mutex::new(None),
        });
        let weak = Arc::downgrade(&queue);
        let written = Arc::clone(&queue.written);
        let thread = std::thread::Builder::new()
            .name("callnext-access-log".to_owned())
            .spawn(move || run(receiver, out, &weak, &written))
            .map_err(|err| {
                ConfigError::invalid("access_log", format!("cannot start its writer: {err}"))
            })?;
        *queue.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(queue)
    }

    /// Queues a line; never waits. A full queue drops it (counted).
    pub(super) fn push(&self, line: String) {
        match self.sender.try_send(Message::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped since the start.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    /// Lines written since the start (the dropped-records notes not counted).
    pub(super) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits (blocking, at most `timeout`) until everything queued before is written.
    pub(super) fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::channel();
        self.sender.send(Message::Flush(ack)).is_ok() && done.recv_timeout(timeout).is_ok()
    }

    /// Flushes, stops the writer and waits for it.
    pub(super) fn close(&self) {
        let _ = self.sender.send(Message::Stop);
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }
}

fn open(sink: &Sink) -> Result<Box<dyn Write + Send>, ConfigError> {
    match sink {
        Sink::Stdout => Ok(Box::new(io::stdout())),
        Sink::Writer(writer) => Ok(Box::new(writer.clone())),
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

fn cannot_open(path: &Path, err: &io::Error) -> ConfigError {
    ConfigError::invalid("path", format!("cannot open {}: {err}", path.display()))
}

/// The file can be opened for appending (the rotating writer would fail later, silently).
fn check_writable(path: &Path) -> Result<(), ConfigError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|err| cannot_open(path, &err))
}

fn run(
    receiver: Receiver<Message>,
    out: Box<dyn Write + Send>,
    queue: &std::sync::Weak<Queue>,
    written: &AtomicU64,
) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    loop {
        let message = match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                note_dropped(&mut out, queue);
                let _ = out.flush();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Message::Line(line) => {
                if out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .is_ok()
                {
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Stop => break,
            Message::Flush(ack) => {
                note_dropped(&mut out, queue);
                let _ = out.flush();
                let _ = ack.send(());
            }
        }
    }
    note_dropped(&mut out, queue);
    let _ = out.flush();
}

/// `{"dropped":N}`: records that did not fit in the queue since the last such line, written
/// when the queue has drained (an idle tick), on a flush and at the end.
fn note_dropped(out: &mut impl Write, queue: &std::sync::Weak<Queue>) {
    let Some(queue) = queue.upgrade() else {
        return;
    };
    let dropped = queue.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        let _ = writeln!(out, "{{\"dropped\":{dropped}}}");
    }
}
