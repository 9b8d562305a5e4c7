//! The limiter's series in a stack's metrics registry.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The limiter's series in a stack's metrics registry.
pub(crate) struct LimiterMetrics {
    allowed: Vec<::metrics::Counter>,
    limited: Vec<::metrics::Counter>,
    shadow_limited: Vec<::metrics::Counter>,
    store_errors: [::metrics::Counter; 3],
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) store_seconds: Arc<crate::metrics::Histogram>,
}

impl LimiterMetrics {
    pub(super) fn count(&self, decision: &Decision, shadow: bool) {
        for (i, outcome) in decision.outcomes().iter().enumerate() {
            if decision.allowed {
                self.allowed[i].increment(1);
            } else if outcome.retry_us > 0 {
                if shadow {
                    self.shadow_limited[i].increment(1);
                } else {
                    self.limited[i].increment(1);
                }
            }
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn store_error(&self, action: OnStoreError) {
        self.store_errors[action.slot()].increment(1);
    }
}

impl RateLimit {
    /// Registers its series (called when the stack records into `metrics`).
    pub(crate) fn register_metrics(
        &self,
        metrics: &crate::metrics::Metrics,
        stack: &str,
        entry: &str,
    ) {
        use crate::metrics::{
            RATE_LIMIT_REQUESTS, RATE_LIMIT_STORE_ERRORS, RATE_LIMIT_STORE_SECONDS,
        };
        let shared = &self.shared;
        let base = || {
            vec![
                ("stack", stack.to_owned()),
                ("middleware", entry.to_owned()),
            ]
        };
        let per_policy = |decision: &str| {
            shared
                .policies
                .iter()
                .map(|p| {
                    let mut labels = base();
                    labels.push(("policy", p.name.clone()));
                    labels.push(("decision", decision.to_owned()));
                    metrics.counter(RATE_LIMIT_REQUESTS, &labels)
                })
                .collect()
        };
        let store = match &shared.store {
            Store::Memory(_) => "memory",
            #[cfg(feature = "redis")]
            Store::Redis { .. } => "redis",
        };
        let error = |action: &str| {
            let mut labels = base();
            labels.push(("action", action.to_owned()));
            metrics.counter(RATE_LIMIT_STORE_ERRORS, &labels)
        };
        let mut labels = base();
        labels.push(("store", store.to_owned()));
        let _ = shared.metrics.set(LimiterMetrics {
            allowed: per_policy("allowed"),
            limited: per_policy("limited"),
            shadow_limited: per_policy("shadow_limited"),
            store_errors: [error("open"), error("closed"), error("local")],
            store_seconds: metrics.histogram(RATE_LIMIT_STORE_SECONDS, labels),
        });
    }
}
