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
            Some(change) => change.value.as_ref(),
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
        state.changes.insert(
            key.to_owned(),
            Change {
                value: Some(value),
                redo: None,
            },
        );
        Ok(())
    }

    /// Changes `key` with `change`, given its current value (`None`: absent) and returning
    /// the new one (`None`: remove it); returns the new value. If another request writes the
    /// session before this one is saved, `change` is applied again to the value it wrote, so
    /// concurrent read-modify-writes of one key (appending to a list, counting) all count.
    /// `change` may run more than once: keep it free of side effects.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
    /// use callnext::middleware::session::{Session, Sessions};
    /// use callnext::{HttpError, Stack, TestClient};
    ///
    /// async fn visit(session: Session) -> Result<String, HttpError> {
    ///     let visits = session.update("visits", |n: Option<u64>| Some(n.unwrap_or(0) + 1)).await?;
    ///     Ok(visits.unwrap_or(0).to_string())
    /// }
    /// let app = axum::Router::new().route("/", axum::routing::post(visit));
    /// let sessions = Sessions::builder().secret([7u8; 64]).build()?;
    /// let client = TestClient::new(Stack::new().hook(sessions).service(app));
    /// let res = client.post("/").send().await;
    /// assert_eq!(res.text(), "1");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// 503 when the store fails; 500 when the stored value is not a `T`, or the new one does
    /// not serialize.
    pub async fn update<T, F>(&self, key: &str, change: F) -> Result<Option<T>, HttpError>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> Option<T> + Send + Sync + 'static,
    {
        let current: Option<T> = self.get(key).await?;
        let new = change(current);
        let value = new
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|err| {
                tracing::error!(key, error = %err, "session value does not serialize");
                HttpError::internal()
            })?;
        let owned = key.to_owned();
        let change = Arc::new(change);
        let redo: Redo = Arc::new(move |stored: Option<&Value>| {
            let current = stored.and_then(|v| match T::deserialize(v) {
                Ok(t) => Some(t),
                Err(err) => {
                    tracing::error!(key = %owned, error = %err, "session value of another type; updated as absent");
                    None
                }
            });
            change(current).and_then(|t| serde_json::to_value(t).ok())
        });
        let mut state = self.loaded().await?;
        // An earlier change of this request to the key comes first when re-applied.
        let redo = match state
            .changes
            .get(key)
            .map(|c| (c.redo.clone(), c.value.clone()))
        {
            None => Some(redo),
            Some((Some(first), _)) => {
                let then: Redo = redo;
                Some(Arc::new(move |stored: Option<&Value>| then(first(stored).as_ref())) as Redo)
            }
            // Set by this request: the later write wins whatever was stored, so the update
            // of that value stands.
            Some((None, _)) => None,
        };
        state.changes.insert(key.to_owned(), Change { value, redo });
        Ok(new)
    }

    /// Removes `key`; saved with the response.
    ///
    /// # Errors
    ///
    /// 503 when the store fails.
    pub async fn remove(&self, key: &str) -> Result<(), HttpError> {
        let mut state = self.loaded().await?;
        state.changes.insert(
            key.to_owned(),
            Change {
                value: None,
                redo: None,
            },
        );
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
        // This request's changes over `data`: on the first try, `data` is what it loaded (the
        // values are already computed); after a conflict, what another request wrote (updates
        // are made again from it).
        let apply = |mut data: Data, again: bool| {
            for (key, change) in &changes {
                let value = match (&change.redo, again) {
                    (Some(redo), true) => redo(data.get(key)),
                    _ => change.value.clone(),
                };
                match value {
                    Some(value) => {
                        data.insert(key.clone(), value);
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
                    apply(Data::new(), false),
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
                    let fresh = Record::new(apply(record.data, false), created_ms, deadline);
                    let fresh = self.create(&fresh).await?;
                    store
                        .destroy(&id, created_ms.saturating_add(shared.absolute_ms))
                        .await
                        .map_err(err)?;
                    return Ok(Some(CookieChange::Issue(fresh)));
                }
                let mut next = Record {
                    version: record.version,
                    data: apply(record.data, false),
                    created_ms,
                    expires_ms: deadline,
                };
                for attempt in 0..TRIES {
                    match store.save(&id, &next, next.version).await.map_err(err)? {
                        Saved::Saved(_) => return Ok(None),
                        Saved::Conflict(mut current) => {
                            // The first conflict is tried again at once on what the other
                            // wrote; after that, a random pause, up to twice as long each
                            // time (writers that met do not meet again at once), and a fresh
                            // read, since what the conflict returned has aged.
                            if attempt > 0 {
                                let most = BACKOFF * (1u32 << attempt.min(6));
                                let micros = u64::try_from(most.as_micros()).unwrap_or(u64::MAX);
                                let pause = getrandom::u64().unwrap_or(0) % micros.max(1);
                                tokio::time::sleep(std::time::Duration::from_micros(pause)).await;
                                match store.load(&id).await.map_err(err)? {
                                    Some(fresh) => current = fresh,
                                    // Destroyed meanwhile (a logout): it stays destroyed.
                                    None => return Ok(Some(CookieChange::Expire)),
                                }
                            }
                            next.data = apply(current.data, true);
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
