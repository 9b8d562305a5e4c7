//! The live stack page: the stack in order, each middleware's own time, its early answers,
//! errors and panics, blocking events as they happen, routes, the slowest recent requests with
//! their waterfalls, and the health of the stores the batteries use.
//!
//! A [`LivePage`] is a handle: give it to the stacks it shows ([`Stack::live`]) and to the
//! admin router that serves it ([`Admin::live_page`](super::Admin::live_page)). Until a stack
//! is given one, nothing is recorded beyond what the metrics record.
//!
//! Served under its path (`/_callnext` by default):
//!
//! | path | what |
//! |---|---|
//! | `/_callnext/` | the page: self-contained HTML, no CDN, updated once a second |
//! | `/_callnext/api/stack` | the latest snapshot as JSON |
//! | `/_callnext/api/requests` | the slowest recent requests with their waterfalls, and the blocking events |
//! | `/_callnext/api/events` | Server-Sent Events: a snapshot about once a second (`event: snapshot`, `id:` its number), heartbeats |
//!
//! Safe by default: answered only to loopback clients (by [`ClientIp`], so a trusted proxy's
//! `X-Forwarded-For` counts) unless a token is set ([`LivePageBuilder::token`]: then only to
//! requests bearing it, as `Authorization: Bearer <token>` or as the password of HTTP Basic
//! authentication, which a browser asks for) or the admin router has a listener of its own
//! ([`LivePageBuilder::open`]). Others get 404 (no token set) or 403 (wrong or missing
//! token; a browser's page load without one gets 401 with a Basic challenge, so it can ask).
//! No cookies; headers never shown; query values hidden unless
//! [`LivePageBuilder::show_query_values`]; the page is sent with a strict CSP with a nonce,
//! `X-Frame-Options: DENY` and `Cache-Control: no-store`. The page's own requests are not
//! counted in its figures.
//!
//! ```
//! use axum::{routing::get, Router};
//! use callnext::admin::{Admin, LivePage};
//! use callnext::{Stack, TestClient};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let page = LivePage::new();
//! let app = Router::new()
//!     .route("/", get(|| async { "hi" }))
//!     .merge(Admin::new().live_page(&page).router());
//! // TestClient's requests come from 127.0.0.1: a loopback client.
//! let client = TestClient::new(Stack::new().live(&page).service(app));
//!
//! client.get("/").await;
//! let snapshot: serde_json::Value = client.get("/_callnext/api/stack").await.json();
//! let stack = &snapshot["stacks"][0];
//! assert_eq!(stack["entries"][0]["name"], "app");
//! assert_eq!(stack["routes"][0]["route"], "/");
//! assert_eq!(stack["routes"][0]["requests"], 1); // the API call itself is not counted
//! assert!(client.get("/_callnext/").await.text().contains("<title>callnext"));
//! # });
//! ```
//!
//! [`Stack::live`]: crate::Stack::live
//! [`ClientIp`]: crate::ClientIp

mod histogram;
pub(crate) mod http;
pub(crate) mod record;
mod snapshot;

use std::sync::{Arc, Mutex, PoisonError, Weak};

pub(crate) use record::{LiveStack, Parts, Started};

use crate::ConfigError;

/// The live stack page: what stacks record into and what the admin router serves.
///
/// Cheap to clone (a handle). See the [module docs](self).
#[derive(Clone)]
pub struct LivePage {
    inner: Arc<Shared>,
}

pub(crate) struct Shared {
    settings: Settings,
    /// The stacks recording here: each stack's identity and its recorder (one per stack,
    /// whatever number of services it was built into).
    stacks: Mutex<Vec<Registered>>,
    snapshots: snapshot::Snapshots,
}

/// A stack's identity and its recorder.
type Registered = (Weak<dyn Send + Sync>, Weak<LiveStack>);

#[derive(Debug, Clone)]
struct Settings {
    path: Arc<str>,
    token: Option<String>,
    open: bool,
    show_query_values: bool,
}

impl std::fmt::Debug for LivePage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePage")
            .field("path", &self.inner.settings.path)
            .field(
                "token",
                &self.inner.settings.token.as_ref().map(|_| "<redacted>"),
            )
            .field("open", &self.inner.settings.open)
            .finish_non_exhaustive()
    }
}

impl Default for LivePage {
    fn default() -> Self {
        Self::new()
    }
}

impl LivePage {
    /// A page at `/_callnext/`, for loopback clients only.
    pub fn new() -> Self {
        Self::from_settings(Settings {
            path: Arc::from("/_callnext"),
            token: None,
            open: false,
            show_query_values: false,
        })
    }

    /// Settings other than the defaults.
    pub fn builder() -> LivePageBuilder {
        LivePageBuilder {
            settings: Settings {
                path: Arc::from("/_callnext"),
                token: None,
                open: false,
                show_query_values: false,
            },
            error: None,
        }
    }

    fn from_settings(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Shared {
                settings,
                stacks: Mutex::new(Vec::new()),
                snapshots: snapshot::Snapshots::default(),
            }),
        }
    }

    /// Where the page is served (`/_callnext`; the page itself at `/_callnext/`).
    pub fn path(&self) -> &str {
        &self.inner.settings.path
    }

    /// The recorder of the stack whose identity is `identity`: the one it has if a service was
    /// built from it before, otherwise a new one from `make`.
    pub(crate) fn recorder(
        &self,
        identity: &Arc<dyn Send + Sync>,
        make: impl FnOnce() -> Parts,
    ) -> Arc<LiveStack> {
        let mut stacks = self
            .inner
            .stacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A stack's figures stay while a service built from it lives, even once the `Stack`
        // value itself is gone.
        stacks.retain(|(_, stack)| stack.strong_count() > 0);
        if let Some(stack) = stacks
            .iter()
            .find(|(id, _)| id.upgrade().is_some_and(|id| Arc::ptr_eq(&id, identity)))
            .and_then(|(_, stack)| stack.upgrade())
        {
            return stack;
        }
        let stack = Arc::new(LiveStack::new(
            make(),
            Arc::clone(&self.inner.settings.path),
            self.inner.settings.show_query_values,
        ));
        stacks.push((Arc::downgrade(identity), Arc::downgrade(&stack)));
        stack
    }

    /// The stacks recording now, in the order they were built.
    fn stacks(&self) -> Vec<Arc<LiveStack>> {
        self.inner
            .stacks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(_, stack)| stack.upgrade())
            .collect()
    }

    /// The router serving the page and its API under [`LivePage::path`].
    pub(crate) fn router<S: Clone + Send + Sync + 'static>(&self) -> axum::Router<S> {
        http::router(self.clone())
    }
}

/// Builds a [`LivePage`] with other settings than [`LivePage::new`]'s.
#[derive(Debug)]
#[must_use]
pub struct LivePageBuilder {
    settings: Settings,
    error: Option<ConfigError>,
}

/// Tokens shorter than this are refused: the token is all that guards the page.
const MIN_TOKEN_LEN: usize = 16;

impl LivePageBuilder {
    /// Where the page is served: a path starting with `/` (default `/_callnext`).
    pub fn path(mut self, path: &str) -> Self {
        let trimmed = path.trim_end_matches('/');
        let plain = |c: char| c.is_ascii_alphanumeric() || "/-_.~".contains(c);
        if !path.starts_with('/') || trimmed.is_empty() {
            self.error.get_or_insert(ConfigError::invalid(
                "page_path",
                format!("must start with `/` and not be `/` alone, got `{path}`"),
            ));
        } else if !path.chars().all(plain) {
            self.error.get_or_insert(ConfigError::invalid(
                "page_path",
                format!("letters, digits and `/-_.~` only, got `{path}`"),
            ));
        } else {
            self.settings.path = Arc::from(trimmed);
        }
        self
    }

    /// Answers the page to any client bearing this token (`Authorization: Bearer <token>`, or
    /// as the password of HTTP Basic authentication), and to no other. At least 16
    /// characters; compared in constant time. An empty token means none.
    pub fn token(mut self, token: &str) -> Self {
        if token.is_empty() {
            self.settings.token = None;
        } else if token.len() < MIN_TOKEN_LEN {
            self.error.get_or_insert(ConfigError::invalid(
                "token",
                format!(
                    "must be at least {MIN_TOKEN_LEN} characters, got {}",
                    token.len()
                ),
            ));
        } else {
            self.settings.token = Some(token.to_owned());
        }
        self
    }

    /// Answers any client without a token: for an admin router on a listener of its own (an
    /// internal port). A token, when set, is still required. Default false: loopback only.
    pub fn open(mut self, open: bool) -> Self {
        self.settings.open = open;
        self
    }

    /// Shows query values in the request paths listed (`?q=secret` rather than `?q=`).
    /// Default false.
    pub fn show_query_values(mut self, show: bool) -> Self {
        self.settings.show_query_values = show;
        self
    }

    /// The page.
    ///
    /// # Errors
    ///
    /// A path not starting with `/`, or a token too short:
    ///
    /// ```
    /// use callnext::admin::LivePage;
    ///
    /// let err = LivePage::builder().token("short").build().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid `token`: must be at least 16 characters, got 5");
    /// let err = LivePage::builder().path("live").build().unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid `page_path`: must start with `/` and not be `/` alone, got `live`"
    /// );
    /// ```
    pub fn build(self) -> Result<LivePage, ConfigError> {
        match self.error {
            Some(err) => Err(err),
            None => Ok(LivePage::from_settings(self.settings)),
        }
    }
}

/// One entry as the page lists it.
#[derive(Clone, serde::Serialize)]
pub(crate) struct EntryView {
    pub(crate) index: usize,
    pub(crate) name: String,
    /// `function`, `struct`, `hook`, `tower`; `app` and `body` for the last two rows.
    pub(crate) kind: String,
    /// Which of callnext's batteries it is.
    pub(crate) battery: Option<&'static str>,
    /// Its settings as `key=value`, secrets redacted (entries built from a configuration
    /// file).
    pub(crate) settings: Vec<String>,
}

/// One store a battery of the stack uses, and the latest probe of it.
pub(crate) struct BackendView {
    pub(crate) entry: String,
    pub(crate) backend: crate::backends::Backend,
    pub(crate) probe: Mutex<snapshot::ProbeState>,
}

impl BackendView {
    pub(crate) fn new(entry: String, backend: crate::backends::Backend) -> Self {
        Self {
            entry,
            backend,
            probe: Mutex::default(),
        }
    }
}
