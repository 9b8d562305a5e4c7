//! [`Session`]: a request's session as handlers and later middlewares use it: read, write,
//! rotate its id, destroy it; loaded on first use, saved with compare-and-set.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Session {
    async fn loaded(&self) -> Result<tokio::sync::MutexGuard<'_, State>, HttpError> {
        self.inner.used.store(true, Ordering::Release);
        let mut state = self.inner.state.lock().await;
        if matches!(state.loaded, Loaded::NotYet) {
            let shared = &self.inner.shared;
            let verified = cookie_values(&state.cookie_headers, &shared.cookie)
                .find_map(|raw| shared.verify(raw));
            state.cookie_id = verified;
            state.loaded = match state.cookie_id.clone() {
                None => Loaded::Absent,
                Some(id) => match shared.store.load(&id).await.map_err(|e| unavailable(&e))? {
                    Some(record)
                        if record.expires_ms > now_ms()
                            && record.created_ms.saturating_add(shared.absolute_ms) > now_ms() =>
                    {
                        Loaded::Found(id, record)
                    }
                    _ => Loaded::Absent,
                },
            };
        }
        Ok(state)
    }

    /// The value at `key`, if there is one (loading the session on first use).
    ///
    /// # Errors
    ///
    /// 503 when the store fails; 500 when the stored value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, HttpError> {
        let state = self.loaded().await?;
        let value = match state.changes.get(key) {
            Some(change) => change.as_ref(),
            None => match &state.loaded {
                Loaded::Found(_, record) => record.data.get(key),
                _ => None,
            },
        };
        value
            .map(|v| {
                T::deserialize(v).map_err(|err| {
                    tracing::error!(key, error = %err, "session value of another type");
                    HttpError::internal()
                })
            })
            .transpose()
    }

    /// Sets `key` to `value`; saved with the response.
    ///
    /// # Errors
    ///
    /// 503 when the store fails; 500 when `value` does not serialize.
    pub async fn insert<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), HttpError> {
        let value = serde_json::to_value(value).map_err(|err| {
            tracing::error!(key, error = %err, "session value does not serialize");
            HttpError::internal()
        })?;
        let mut state = self.loaded().await?;
        state.changes.insert(key.to_owned(), Some(value));
        Ok(())
    }

    /// Removes `key`; saved with the response.
    ///
    /// # Errors
    ///
    /// 503 when the store fails.
    pub async fn remove(&self, key: &str) -> Result<(), HttpError> {
        let mut state = self.loaded().await?;
        state.changes.insert(key.to_owned(), None);
        Ok(())
    }

    /// Gives the session a new id, keeping its data, and ends the old id: call it on login and
    /// on every change of privilege.
    pub async fn cycle_id(&self) -> Result<(), HttpError> {
        let mut state = self.loaded().await?;
        state.cycle = true;
        Ok(())
    }

    /// Ends the session (logout): removed from the store for good, its cookie expired.
    pub async fn destroy(&self) -> Result<(), HttpError> {
        let mut state = self.loaded().await?;
        state.destroy = true;
        Ok(())
    }

    /// Writes what this request did; what the cookie must say, if anything.
    pub(super) async fn commit(&self) -> Result<Option<CookieChange>, HttpError> {
        let shared = Arc::clone(&self.inner.shared);
        let store = &shared.store;
        let err = |e: StoreError| unavailable(&e);
        let mut state = self.inner.state.lock().await;
        let now = now_ms();
        let loaded = std::mem::replace(&mut state.loaded, Loaded::NotYet);
        let changes = std::mem::take(&mut state.changes);
        let apply = |mut data: Data| {
            for (key, change) in &changes {
                match change {
                    Some(value) => {
                        data.insert(key.clone(), value.clone());
                    }
                    None => {
                        data.remove(key);
                    }
                }
            }
            data
        };
        if state.destroy {
            if let Loaded::Found(id, record) = &loaded {
                let until = record.created_ms.saturating_add(shared.absolute_ms);
                store.destroy(id, until).await.map_err(err)?;
            }
            return Ok(state.cookie_id.is_some().then_some(CookieChange::Expire));
        }
        match loaded {
            Loaded::NotYet => Ok(None),
            Loaded::Absent => {
                if changes.is_empty() {
                    // A stale cookie with nothing to keep: tell the browser to drop it.
                    return Ok(state.cookie_id.is_some().then_some(CookieChange::Expire));
                }
                let record = Record::new(
                    apply(Data::new()),
                    now,
                    now.saturating_add(shared.idle_ms.min(shared.absolute_ms)),
                );
                Ok(Some(CookieChange::Issue(self.create(&record).await?)))
            }
            Loaded::Found(id, mut record) => {
                let deadline = now
                    .saturating_add(shared.idle_ms)
                    .min(record.created_ms.saturating_add(shared.absolute_ms));
                if changes.is_empty() && !state.cycle {
                    // Only a touch, and only once a quarter of the idle window has passed.
                    let touched_at = record.expires_ms.saturating_sub(shared.idle_ms);
                    if now.saturating_sub(touched_at) >= shared.idle_ms / 4 {
                        let version = record.version;
                        record.expires_ms = deadline;
                        // A conflict means another request wrote, and so touched it.
                        store.save(&id, &record, version).await.map_err(err)?;
                    }
                    return Ok(None);
                }
                let created_ms = record.created_ms;
                if state.cycle {
                    // The new id is made with the new data first, then the old id is ended:
                    // the old id (which a planted cookie may carry) never holds the new data,
                    // whatever fails or is cancelled in between.
                    let fresh = Record::new(apply(record.data), created_ms, deadline);
                    let fresh = self.create(&fresh).await?;
                    store
                        .destroy(&id, created_ms.saturating_add(shared.absolute_ms))
                        .await
                        .map_err(err)?;
                    return Ok(Some(CookieChange::Issue(fresh)));
                }
                let mut next = Record {
                    version: record.version,
                    data: apply(record.data),
                    created_ms,
                    expires_ms: deadline,
                };
                for _ in 0..TRIES {
                    match store.save(&id, &next, next.version).await.map_err(err)? {
                        Saved::Saved(_) => return Ok(None),
                        Saved::Conflict(current) => {
                            next.data = apply(current.data);
                            next.version = current.version;
                        }
                        // Destroyed meanwhile (a logout): it stays destroyed.
                        Saved::Gone => return Ok(Some(CookieChange::Expire)),
                    }
                }
                tracing::error!("session write kept conflicting; answered 503");
                Err(HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable",
                ))
            }
        }
    }

    /// Stores `record` under a new id (trying another on the rare collision); the id.
    async fn create(&self, record: &Record) -> Result<String, HttpError> {
        let store = &self.inner.shared.store;
        for _ in 0..TRIES {
            let id = new_id();
            if store
                .create(&id, record)
                .await
                .map_err(|e| unavailable(&e))?
            {
                return Ok(id);
            }
        }
        Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            tracing::error!("Session extracted without the session battery in the stack");
            HttpError::internal()
        })
    }
}
