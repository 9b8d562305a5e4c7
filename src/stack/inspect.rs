//! What a stack says of itself and its entries: the blocking report, its description, the
//! order linter's warnings, and flushing what its entries hold.

use std::sync::Arc;

use super::entry::EntryInfo;
use super::Stack;
use crate::error::ConfigError;
use crate::instrument::BlockingReport;

impl Stack {
    /// The blocking events seen by every service built from this stack (or its clones): each
    /// entry (each hook its own), then `app` and `body`.
    ///
    /// ```
    /// use callnext::{Next, Request, Response, Stack, TestClient};
    ///
    /// async fn blocks(req: Request, next: Next<'_>) -> Response {
    ///     std::thread::sleep(std::time::Duration::from_millis(5)); // a synchronous call
    ///     next.run(req).await
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    /// let stack = Stack::new()
    ///     .func(blocks)
    ///     .blocking_threshold(std::time::Duration::from_millis(1));
    /// TestClient::new(stack.service(app)).get("/").await;
    ///
    /// let report = stack.blocking_report();
    /// assert_eq!(report.get("blocks").unwrap().events, 1);
    /// assert_eq!(report.get("blocks").unwrap().last_route, "/");
    /// assert!(std::panic::catch_unwind(|| report.assert_clean()).is_err());
    /// # });
    /// ```
    pub fn blocking_report(&self) -> BlockingReport {
        BlockingReport::collect(
            self.entries
                .iter()
                .map(|e| (&*e.name, &*e.stats))
                .chain([("app", &*self.app_stats), ("body", &*self.body_stats)]),
        )
    }

    pub(crate) fn fail(&mut self, err: ConfigError) {
        self.error.get_or_insert(err);
    }

    /// The entries in execution order.
    pub fn describe(&self) -> Vec<EntryInfo> {
        self.entries
            .iter()
            .enumerate()
            .map(|(index, e)| EntryInfo {
                index,
                name: e.name.to_string(),
                kind: e.kind,
            })
            .collect()
    }

    /// How many entries the stack has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the stack has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The [`BackgroundTasks`](crate::BackgroundTasks) of every service built from this stack:
    /// wait for them at shutdown, after the server has stopped.
    pub fn background(&self) -> crate::Background {
        crate::Background(Arc::clone(&self.background))
    }

    /// Writes out what the stack's entries still hold (the access log's queued records),
    /// waiting at most `timeout` for each: call it after the server has stopped, so every
    /// response sent is logged. `false` if an entry took longer.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        // Every entry is flushed, even after one that timed out.
        let results: Vec<bool> = self
            .entries
            .iter()
            .filter_map(|e| e.caps.flush.as_ref())
            .map(|flush| flush(timeout))
            .collect();
        #[cfg(feature = "otel")]
        let results = {
            let mut results = results;
            if let Some(telemetry) = &self.settings.telemetry {
                results.push(telemetry.flush(timeout));
                let (dropped, sent) = telemetry.counts();
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        sent,
                        "spans were dropped: the export queue was full or the collector failed"
                    );
                }
            }
            results
        };
        results.into_iter().all(|ok| ok)
    }

    /// The batteries' order checked against the recommended one: the request id first, CORS
    /// outside auth, rate limits and sessions, the access log outside everything that can
    /// answer early. Each broken rule is a warning in the log when the stack is built (an
    /// error with [`Stack::strict_order`]).
    pub fn lint(&self) -> Vec<crate::OrderWarning> {
        super::lint::lint(&self.entries)
    }
}
