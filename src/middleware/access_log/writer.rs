//! The access log's writer: a thread of its own behind a bounded queue, so requests never
//! wait on log I/O; records that do not fit are dropped and counted.

use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::sink::{open, Out, Sink};
use crate::ConfigError;

/// Records waiting for the writer, and what it is asked to do.
#[derive(Default)]
struct Pending {
    /// The queued lines, each ending in `\n`, in one buffer: appending copies the line and
    /// allocates nothing (after the buffer has grown), and nothing is freed on another thread.
    bytes: Vec<u8>,
    /// How many lines `bytes` holds.
    lines: usize,
    /// Flushes asked for: whom to tell (whether every line reached the sink), and by when
    /// (what an HTTP sink cannot send by then it gives up on).
    flushes: Vec<(mpsc::Sender<bool>, std::time::Instant)>,
    stop: bool,
}

impl Pending {
    fn append(&mut self, line: &str) {
        self.bytes.extend_from_slice(line.as_bytes());
        self.bytes.push(b'\n');
        self.lines += 1;
    }
}

/// What the hook and the writer share.
///
/// Written by hand rather than on a channel: a channel wakes the writer thread for every
/// record, and that wake-up (a futex call and a context switch on a busy core) cost more CPU
/// than the rest of a request (measured with bench/batteries.sh: +11 µs per request with a
/// channel). Records are appended under a mutex; the writer wakes every 100 ms, when the
/// buffer is half full, or for a flush.
pub(super) struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
    capacity: usize,
    dropped: AtomicU64,
    dropped_total: AtomicU64,
    written: AtomicU64,
    /// Records an HTTP sink gave up on (counted among the dropped too).
    unsent: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Wakes the requests waiting for room ([`OnFull::Block`]) when the writer takes a batch.
    room: tokio::sync::Notify,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.capacity)
            .field("dropped", &self.dropped_total)
            .finish_non_exhaustive()
    }
}

/// What the writer took from the queue.
struct Taken {
    lines: usize,
    flushes: Vec<(mpsc::Sender<bool>, std::time::Instant)>,
    stop: bool,
}

/// How long the writer sleeps when nothing asks for it.
const TICK: Duration = Duration::from_millis(100);

impl Queue {
    pub(super) fn start(sink: &Sink, capacity: usize) -> Result<Arc<Self>, ConfigError> {
        let out = open(sink)?;
        let capacity = capacity.max(1);
        let queue = Arc::new(Self {
            pending: Mutex::new(Pending {
                bytes: Vec::with_capacity(capacity.min(4096) * 256),
                ..Pending::default()
            }),
            wake: Condvar::new(),
            capacity,
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            written: AtomicU64::new(0),
            unsent: AtomicU64::new(0),
            thread: Mutex::new(None),
            room: tokio::sync::Notify::new(),
        });
        let writer = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("callnext-access-log".to_owned())
            .spawn(move || writer.run(out))
            .map_err(|err| {
                ConfigError::invalid("access_log", format!("cannot start its writer: {err}"))
            })?;
        *queue.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(queue)
    }

    /// Queues a line; never waits on I/O. A full queue drops it (counted).
    pub(super) fn push(&self, line: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.stop || pending.lines >= self.capacity {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.append(line);
        let wake = pending.lines == (self.capacity / 2).max(1);
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Queues a line even past the capacity; for a request that was admitted when there was
    /// room ([`OnFull::Block`]), so the overshoot is bounded by the requests in flight.
    pub(super) fn push_admitted(&self, line: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.stop {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.append(line);
        let wake = pending.lines >= (self.capacity / 2).max(1);
        drop(pending);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Whether a record would fit now.
    pub(super) fn has_room(&self) -> bool {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.stop || pending.lines < self.capacity
    }

    /// Waits until a record fits ([`OnFull::Block`]); the writer wakes the waiters each time
    /// it takes a batch.
    pub(super) async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            self.wake.notify_one();
            notified.await;
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

    /// Records an HTTP sink could not send (also counted in [`Self::dropped`]).
    pub(super) fn unsent(&self) -> u64 {
        self.unsent.load(Ordering::Relaxed)
    }

    /// Waits (blocking, at most `timeout`) until everything queued before is written;
    /// `false` if that took longer or some records could not be written since the last flush
    /// answered (an HTTP sink that gave up at the deadline answers just after it, so the answer
    /// says which, not the clock).
    pub(super) fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = mpsc::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.stop {
                return false;
            }
            pending
                .flushes
                .push((ack, std::time::Instant::now() + timeout));
        }
        self.wake.notify_one();
        done.recv_timeout(timeout).unwrap_or(false)
    }

    /// Writes what is queued, stops the writer and waits for it.
    pub(super) fn close(&self) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.wake.notify_one();
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }

    fn run(&self, out: Out) {
        match out {
            Out::Write(out) => self.run_writer(out),
            #[cfg(feature = "log-shipping")]
            Out::Http(shipper) => self.run_shipper(*shipper),
        }
    }

    /// Takes what is queued, after waiting at most `wait` for something to do.
    fn take(&self, batch: &mut Vec<u8>, wait: Duration) -> Taken {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.lines == 0 && pending.flushes.is_empty() && !pending.stop {
            pending = self
                .wake
                .wait_timeout(pending, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        // The two buffers take turns: the writer's, emptied, becomes the queue's.
        std::mem::swap(batch, &mut pending.bytes);
        let lines = std::mem::take(&mut pending.lines);
        Taken {
            lines,
            flushes: std::mem::take(&mut pending.flushes),
            stop: pending.stop,
        }
    }

    fn run_writer(&self, out: Box<dyn Write + Send>) {
        let mut out = BufWriter::with_capacity(64 * 1024, out);
        let mut batch = Vec::new();
        // Whether a write failed since the last flush was answered (as the HTTP sink counts).
        let mut failed = false;
        loop {
            let taken = self.take(&mut batch, TICK);
            if taken.lines > 0 {
                self.room.notify_waiters();
                if out.write_all(&batch).is_ok() {
                    self.written
                        .fetch_add(taken.lines as u64, Ordering::Relaxed);
                } else {
                    failed = true;
                }
                batch.clear();
            }
            self.note_dropped(&mut out);
            failed |= out.flush().is_err();
            if !taken.flushes.is_empty() {
                for (ack, _) in taken.flushes {
                    let _ = ack.send(!failed);
                }
                failed = false;
            }
            if taken.stop {
                break;
            }
        }
    }

    /// The HTTP sink's loop: lines go into its batch, sent when full, when due, on a flush
    /// (within the flush's time) and at the end (within the time of the last flush asked for,
    /// or a single attempt of 2 s).
    #[cfg(feature = "log-shipping")]
    fn run_shipper(&self, mut shipper: super::ship::Shipper) {
        use std::time::Instant;
        let dropped = super::ship::Dropped(&self.dropped, &self.dropped_total);
        let mut batch = Vec::new();
        let mut last_deadline = None;
        // Records missed when the last flush was answered.
        let mut reported = 0;
        loop {
            let wait = shipper.due_in().map_or(TICK, |due| due.min(TICK));
            let taken = self.take(&mut batch, wait);
            if taken.lines > 0 {
                self.room.notify_waiters();
                shipper.add(&batch, taken.lines, &self.written, &dropped);
                batch.clear();
            }
            let deadline = taken.flushes.iter().map(|(_, by)| *by).max();
            if deadline.is_some() {
                last_deadline = deadline;
            }
            let all = deadline.is_some() || taken.stop;
            let deadline = match (deadline, taken.stop) {
                (Some(by), _) => Some(by),
                (None, true) => Some(
                    last_deadline
                        .filter(|by| *by > Instant::now())
                        .unwrap_or_else(|| Instant::now() + Duration::from_secs(2)),
                ),
                (None, false) => None,
            };
            shipper.send_due(all, deadline, &self.written, &dropped);
            self.unsent.store(shipper.unsent, Ordering::Relaxed);
            if !taken.flushes.is_empty() {
                // Records missed since the last flush answered, whenever they were missed (a
                // batch whose wait ran out just before this flush was asked counts too).
                let ok = shipper.missed == reported;
                reported = shipper.missed;
                for (ack, _) in taken.flushes {
                    let _ = ack.send(ok);
                }
            }
            if taken.stop {
                if shipper.unsent > 0 {
                    tracing::warn!(
                        records = shipper.unsent,
                        "access log: records could not be sent before the end"
                    );
                }
                break;
            }
        }
    }

    /// `{"dropped":N}`: records that did not fit in the queue since the last such line,
    /// written once the writer has caught up.
    fn note_dropped(&self, out: &mut impl Write) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(out, "{{\"dropped\":{dropped}}}");
        }
    }
}
