//! [`BackgroundTasks`]: work attached to a response that runs after its body has been sent,
//! like FastAPI's `BackgroundTasks`.
//!
//! The tasks run one after the other, in the order they were added, once the response body has
//! been sent in full, or dropped because the client left (they still run). A task that fails
//! or panics is logged with the request's id, and, as in Starlette, the tasks queued after it
//! do not run (logged with their number). At shutdown,
//! [`Stack::background`](crate::Stack::background) gives a handle that waits for running and
//! queued tasks up to a deadline and says how many were cut.
//!
//! ```
//! use callnext::{BackgroundTasks, Stack, TestClient};
//! use axum::{routing::post, Router};
//! use std::sync::{Arc, Mutex};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let sent = Arc::new(Mutex::new(Vec::new()));
//! let outbox = Arc::clone(&sent);
//! let app = Router::new().route("/signup", post(move || {
//!     let outbox = Arc::clone(&outbox);
//!     async move {
//!         let tasks = BackgroundTasks::new().add_task(async move {
//!             outbox.lock().unwrap().push("welcome mail");
//!         });
//!         (tasks, "created")
//!     }
//! }));
//! let stack = Stack::new();
//! let background = stack.background();
//! let res = TestClient::new(stack.service(app)).post("/signup").await;
//! assert_eq!(res.text(), "created");
//! assert_eq!(background.wait(std::time::Duration::from_secs(5)).await, 0);
//! assert_eq!(*sent.lock().unwrap(), ["welcome mail"]);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::response::{IntoResponseParts, ResponseParts};
use futures_util::FutureExt;
use tokio::sync::Notify;

type Task = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Tasks to run after the response has been sent; return it beside the body.
#[derive(Clone, Default)]
#[must_use]
pub struct BackgroundTasks {
    tasks: Arc<Mutex<Vec<Task>>>,
}

impl fmt::Debug for BackgroundTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("BackgroundTasks")
            .field("tasks", &n)
            .finish()
    }
}

impl BackgroundTasks {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task.
    pub fn add_task(self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.push(Box::pin(task.map(Ok)))
    }

    /// Adds a task that can fail; its error is logged with the request id.
    pub fn add_fallible_task<E: fmt::Display>(
        self,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Self {
        self.push(Box::pin(task.map(|r| r.map_err(|e| e.to_string()))))
    }

    fn push(self, task: Task) -> Self {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(task);
        self
    }

    /// Puts these tasks on `res`, after any tasks already on it: an outer middleware adds
    /// its own to those of the handler and of the middlewares inside it, and all of them run
    /// (inner ones first).
    ///
    /// ```
    /// use callnext::{BackgroundTasks, Next, Request, Response, Stack, TestClient};
    /// use axum::{routing::get, Router};
    /// use std::sync::{Arc, Mutex};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let ran = Arc::new(Mutex::new(Vec::new()));
    /// let (a, b) = (ran.clone(), ran.clone());
    /// let app = Router::new().route("/", get(move || {
    ///     let a = a.clone();
    ///     async move { (BackgroundTasks::new().add_task(async move { a.lock().unwrap().push("handler") }), "ok") }
    /// }));
    /// let stack = Stack::new().on_response("audit", move |res: &mut Response| {
    ///     let b = b.clone();
    ///     BackgroundTasks::new()
    ///         .add_task(async move { b.lock().unwrap().push("middleware") })
    ///         .add_to(res);
    /// });
    /// let background = stack.background();
    /// TestClient::new(stack.service(app)).get("/").await;
    /// background.wait(std::time::Duration::from_secs(5)).await;
    /// assert_eq!(*ran.lock().unwrap(), ["handler", "middleware"]);
    /// # });
    /// ```
    pub fn add_to(self, res: &mut crate::Response) {
        add(res.extensions_mut(), self);
    }

    pub(crate) fn take(&self) -> Vec<Task> {
        std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl IntoResponseParts for BackgroundTasks {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        add(res.extensions_mut(), self);
        Ok(res)
    }
}

/// `tasks` after those already in `extensions`, never instead of them.
fn add(extensions: &mut http::Extensions, tasks: BackgroundTasks) {
    match extensions.get_mut::<BackgroundTasks>() {
        Some(earlier) if !Arc::ptr_eq(&earlier.tasks, &tasks.tasks) => {
            let later = tasks.take();
            earlier
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(later);
        }
        Some(_) => {}
        None => {
            extensions.insert(tasks);
        }
    }
}

/// Counts a stack's background tasks, for the wait at shutdown.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    pending: AtomicUsize,
    idle: Notify,
}

/// Waits for a stack's background tasks at shutdown; from [`Stack::background`](crate::Stack::background).
#[derive(Debug, Clone)]
pub struct Background(pub(crate) Arc<Tracker>);

impl Background {
    /// Tasks queued or running now.
    pub fn pending(&self) -> usize {
        self.0.pending.load(Ordering::Acquire)
    }

    /// Waits until no task is queued or running, at most `timeout`; returns how many were
    /// still pending then (0 when all finished).
    pub async fn wait(&self, timeout: Duration) -> usize {
        let all_done = async {
            loop {
                let idle = self.0.idle.notified();
                if self.pending() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(timeout, all_done).await;
        self.pending()
    }
}

/// Runs `tasks` in order on a task of their own; a failure or panic is logged with
/// `request_id` and ends the run.
pub(crate) fn run(tracker: &Arc<Tracker>, tasks: Vec<Task>, request_id: Option<String>) {
    if tasks.is_empty() {
        return;
    }
    tracker.pending.fetch_add(tasks.len(), Ordering::AcqRel);
    let tracker = Arc::clone(tracker);
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::error!("background tasks need a tokio runtime; dropped");
        tracker.pending.fetch_sub(tasks.len(), Ordering::AcqRel);
        return;
    };
    handle.spawn(async move {
        let mut tasks = tasks.into_iter();
        while let Some(task) = tasks.next() {
            let outcome = std::panic::AssertUnwindSafe(task).catch_unwind().await;
            let id = request_id.as_deref().unwrap_or("-");
            let failed = match outcome {
                Ok(Ok(())) => false,
                Ok(Err(error)) => {
                    tracing::error!(request_id = id, %error, "background task failed");
                    true
                }
                Err(payload) => {
                    tracing::error!(
                        request_id = id,
                        panic = crate::stack::panic_message(&*payload),
                        "background task panicked"
                    );
                    true
                }
            };
            // As Starlette's: a failed task stops the ones queued after it.
            let skipped = if failed { tasks.len() } else { 0 };
            if skipped > 0 {
                tracing::error!(
                    request_id = id,
                    skipped,
                    "background tasks queued after the failed one not run"
                );
            }
            if tracker.pending.fetch_sub(1 + skipped, Ordering::AcqRel) == 1 + skipped {
                tracker.idle.notify_waiters();
            }
            if failed {
                break;
            }
        }
    });
}
