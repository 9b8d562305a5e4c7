//! The limiter as a hook: decided before the request runs, charged after it when only some
//! statuses count, its headers on the answer.

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
        // Counting only some answers: look (cost 0 takes nothing), charge on the response.
        let (charge, ask) = if shared.count_statuses.is_empty() {
            (None, cost)
        } else {
            (Some((caller.clone(), cost)), 0)
        };
        let with_charge = move |decided: Decided| Decided(decided.0, charge);
        let peeked = move |decision: Decision| {
            if ask == cost {
                decision
            } else {
                decision.as_if(&shared.rates, cost)
            }
        };
        match &shared.store {
            Store::Memory(memory) => {
                match self.settle(peeked(memory.check(&caller, &shared.rates, ask))) {
                    Ok(decided) => Flow::Continue(with_charge(decided)),
                    Err(res) => Flow::Respond(res),
                }
            }
            #[cfg(feature = "redis")]
            Store::Redis { store, local } => Flow::wait(async move {
                self.check_redis(store, local.as_ref(), caller, ask, peeked)
                    .await
                    .map(with_charge)
            }),
        }
    }

    fn on_response<'a>(&'a self, decided: Decided, res: &'a mut Response) -> Flow<'a> {
        let shared = &self.shared;
        if let Decided(Some(decision), _) = &decided {
            shared
                .rendered
                .write(res.headers_mut(), decision, &shared.policies);
        }
        let Decided(_, Some((caller, cost))) = decided else {
            return Flow::Continue(());
        };
        if !shared.count_statuses.contains(&res.status()) {
            return Flow::Continue(());
        }
        match &shared.store {
            Store::Memory(memory) => {
                memory.check(&caller, &shared.rates, cost);
                Flow::Continue(())
            }
            #[cfg(feature = "redis")]
            Store::Redis { store, local } => Flow::wait(async move {
                // The answer stands whatever the store says; its failures are counted there.
                let _ = self
                    .check_redis(store, local.as_ref(), caller, cost, |d| d)
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
        cost: u64,
        peeked: impl FnOnce(Decision) -> Decision,
    ) -> Result<Decided, Response> {
        let shared = &self.shared;
        let tag = caller.to_string();
        let keys: Vec<String> = shared
            .policies
            .iter()
            .map(|p| format!("{}:{{{tag}}}:{}", shared.prefix, p.name))
            .collect();
        let started = crate::clock::ticks::now();
        let result = store.check(&keys, &shared.rates, cost, &shared.name).await;
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
            Ok(decision) => return self.settle(peeked(decision)),
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
                self.settle(peeked(memory.check(&caller, &shared.rates, cost)))
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
