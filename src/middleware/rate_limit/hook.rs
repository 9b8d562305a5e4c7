//! The limiter as a hook: decided and charged before the request runs, the charge given back
//! on the response when only some statuses count and its status is not one of them; its
//! headers on the answer.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Hook for RateLimit {
    type State = Decided;

    fn capabilities(&self) -> crate::battery::Capabilities {
        let mut caps = crate::battery::Capabilities::new()
            .kind("rate_limit")
            .inside_cors();
        if self.keyed_by_identity() {
            caps = caps.needs_identity();
        }
        for store in self.backends() {
            caps = caps.store(store);
        }
        #[cfg(feature = "prometheus")]
        let caps = {
            let limit = self.clone();
            caps.metrics(move |metrics, stack, entry| limit.register_metrics(metrics, stack, entry))
        };
        caps
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Decided> {
        if !self.applies(req) {
            return Flow::Continue(Decided(None, None));
        }
        let shared = &self.shared;
        let caller = shared.callers.caller(req);
        let cost = shared.cost.as_ref().map_or(shared.fixed_cost, |f| f(req));
        // Counting only some answers: charged up front all the same (so concurrent requests
        // cannot all pass a check made before any of them is answered), and given back on
        // the response when its status does not count.
        match &shared.store {
            Store::Memory(memory) => {
                let decision = memory.check(&caller, &shared.rates, cost);
                match self.settle_charged(decision, caller, None, cost, false) {
                    Ok(decided) => Flow::Continue(decided),
                    Err(res) => Flow::Respond(res),
                }
            }
            #[cfg(feature = "redis")]
            Store::Redis { store, local } => {
                let keys = self.redis_keys(&caller, crate::battery::StoreScope::of(req));
                Flow::wait(self.check_redis(store, local.as_ref(), caller, keys, cost))
            }
        }
    }

    fn on_response<'a>(&'a self, decided: Decided, res: &'a mut Response) -> Flow<'a> {
        let shared = &self.shared;
        if let Decided(Some(decision), _) = &decided {
            shared
                .rendered
                .write(res.headers_mut(), decision, &shared.policies);
        }
        let Decided(_, Some(charge)) = decided else {
            return Flow::Continue(());
        };
        if shared.count_statuses.contains(&res.status()) {
            return Flow::Continue(());
        }
        match &shared.store {
            Store::Memory(memory) => {
                memory.refund(&charge.caller, &shared.rates, charge.cost);
                Flow::Continue(())
            }
            #[cfg(feature = "redis")]
            Store::Redis {
                local: Some(memory),
                ..
            } if charge.local => {
                memory.refund(&charge.caller, &shared.rates, charge.cost);
                Flow::Continue(())
            }
            #[cfg(feature = "redis")]
            Store::Redis { store, .. } => Flow::wait(async move {
                // A refund the store does not take leaves the charge: the caller is limited
                // a little early, never late. Its failures are counted by the guard.
                let Some(keys) = charge.keys else {
                    return Ok(());
                };
                let _ = store
                    .refund(&keys, &shared.rates, charge.cost, &shared.name)
                    .await;
                Ok::<(), Response>(())
            }),
        }
    }
}

/// Deciding one request.
impl RateLimit {
    /// Whether the request is this limiter's to count.
    fn applies(&self, req: &Request) -> bool {
        let shared = &self.shared;
        if !shared.count_preflights && crate::battery::is_preflight(req) {
            return false;
        }
        shared.paths.is_empty() || shared.paths.matches(req.uri().path())
    }

    /// [`settle`](Self::settle), keeping the charge to give back when only some statuses
    /// count and the request was charged (allowed, at a cost).
    #[allow(clippy::result_large_err)]
    fn settle_charged(
        &self,
        decision: Decision,
        caller: Caller,
        keys: Option<Vec<String>>,
        cost: u64,
        local: bool,
    ) -> Result<Decided, Response> {
        let charged = decision.allowed && cost > 0 && !self.shared.count_statuses.is_empty();
        let Decided(decision, _) = self.settle(decision)?;
        Ok(Decided(
            decision,
            charged.then_some(Charge {
                caller,
                keys,
                cost,
                local,
            }),
        ))
    }

    /// The caller's keys in Redis, one per policy, sharing the caller's hash tag; after the
    /// prefix, the request's [`StoreScope`](crate::battery::StoreScope) if it has one (a
    /// `TestClient`'s).
    #[cfg(feature = "redis")]
    fn redis_keys(&self, caller: &Caller, scope: Option<&str>) -> Vec<String> {
        use std::fmt::Write as _;
        let shared = &self.shared;
        // Each key written into one allocation of its own (no copies of the prefix or the
        // caller's text first: a request's keys are on the Redis store's path).
        shared
            .policies
            .iter()
            .map(|p| {
                let mut key = String::with_capacity(shared.prefix.len() + 64 + p.name.len());
                key.push_str(&shared.prefix);
                if let Some(scope) = scope {
                    key.push(':');
                    key.push_str(scope);
                }
                let _ = write!(key, ":{{{caller}}}:");
                key.push_str(&p.name);
                key
            })
            .collect()
    }

    /// The answer to a decided request: on with its decision, or the 429.
    // The error is the response itself, made once and moved into the hook's flow.
    #[allow(clippy::result_large_err)]
    fn settle(&self, decision: Decision) -> Result<Decided, Response> {
        let shared = &self.shared;
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = shared.metrics.get() {
            metrics.count(&decision, shared.shadow);
        }
        if decision.allowed {
            return Ok(Decided((!shared.shadow).then_some(decision), None));
        }
        if shared.shadow {
            tracing::info!(
                middleware = %shared.name,
                retry_after_ms = decision.retry_us() / 1000,
                "rate limit (shadow mode) would refuse this request"
            );
            return Ok(Decided(None, None));
        }
        let retry = decision.retry_us().div_ceil(1_000_000).max(1);
        let mut res =
            HttpError::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        let headers = res.headers_mut();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(retry));
        shared.rendered.write(headers, &decision, &shared.policies);
        Err(res)
    }

    #[cfg(feature = "redis")]
    #[allow(clippy::result_large_err)]
    async fn check_redis(
        &self,
        store: &self::redis::RedisStore,
        local: Option<&MemoryStore>,
        caller: Caller,
        keys: Vec<String>,
        cost: u64,
    ) -> Result<Decided, Response> {
        let shared = &self.shared;
        let started = crate::clock::ticks::now();
        // The keys go with the check; a copy stays only when the charge may be given back.
        let kept = (!shared.count_statuses.is_empty()).then(|| keys.clone());
        let result = store.check(keys, &shared.rates, cost, &shared.name).await;
        // A call the open breaker refused took no time at the store: not a latency.
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = shared.metrics.get() {
            if !matches!(result, Err(crate::battery::Refused::Open)) {
                metrics
                    .store_seconds
                    .record_ticks(crate::clock::ticks::now().saturating_sub(started));
            }
        }
        #[cfg(not(feature = "prometheus"))]
        let _ = started;
        let failed = match result {
            Ok(decision) => return self.settle_charged(decision, caller, kept, cost, false),
            Err(err) => err,
        };
        tracing::debug!(
            middleware = %shared.name,
            error = %failed,
            "rate limit store unavailable"
        );
        shared.store_errors[shared.on_store_error.slot()].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = shared.metrics.get() {
            metrics.store_error(shared.on_store_error);
        }
        match (shared.on_store_error, local) {
            (OnStoreError::Local, Some(memory)) => {
                let decision = memory.check(&caller, &shared.rates, cost);
                self.settle_charged(decision, caller, None, cost, true)
            }
            (OnStoreError::Closed, _) => {
                let mut res =
                    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
                        .into_response();
                res.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(1u64));
                Err(res)
            }
            _ => Ok(Decided(None, None)),
        }
    }
}
