//! [`Sessions`]: server-side sessions behind a signed cookie, loaded lazily, saved only when
//! changed, with idle and absolute timeouts enforced by the server and writes that do not
//! lose each other.
//!
//! - The cookie (`id` by default) holds only an opaque 128-bit id from a CSPRNG, signed with a
//!   secret of at least 64 bytes (the `cookie` crate's signed jar; old secrets still verify
//!   while you rotate). `HttpOnly`, `SameSite=Lax`, `Path=/` and no `Domain` unless set
//!   (`cookie_path`, `cookie_domain`), `Max-Age` the absolute timeout unless set
//!   (`cookie_max_age`, zero for none); `Secure` when the request came over TLS or through a
//!   trusted proxy that says https; `__Host-` prefix on request. An unknown, expired or tampered id is never adopted: a new session gets a new id.
//! - A request that never touches its [`Session`] makes no store call. Reading only extends the
//!   idle deadline, and at most once per quarter of the idle window.
//! - Idle (30 min) and absolute (8 h) timeouts are checked on the server, whatever the cookie's
//!   `Max-Age` says.
//! - Writes are compare-and-set on a version: when two requests change one session at once,
//!   the second merges its own changes (keys it set or removed) into what the first wrote and
//!   tries again, after a short random pause; if both set one key, the later write wins, and
//!   [`Session::update`] re-applies its change to the value the other wrote, so read-modify-
//!   write of one key (appending to a list, counting) loses nothing. [`Session::destroy`] leaves a
//!   tombstone, so a request that loaded the session before the logout cannot bring it back.
//! - A store that fails is a 503 JSON for the request, never an empty session.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), callnext::ConfigError> {
//! use axum::{routing::{get, post}, Router};
//! use callnext::middleware::session::{Session, Sessions};
//! use callnext::{HttpError, Stack, TestClient};
//!
//! async fn add(session: Session) -> Result<String, HttpError> {
//!     let mut items: Vec<String> = session.get("items").await?.unwrap_or_default();
//!     items.push("pen".to_owned());
//!     session.insert("items", &items).await?;
//!     Ok(items.len().to_string())
//! }
//!
//! let sessions = Sessions::builder().secret([7u8; 64]).build()?;
//! let app = Router::new().route("/add", post(add));
//! let client = TestClient::new(Stack::new().hook(sessions).service(app));
//! let first = client.post("/add").await;
//! assert_eq!(first.text(), "1");
//! let cookie = first.header("set-cookie").unwrap().split(';').next().unwrap().to_owned();
//! assert!(first.header("set-cookie").unwrap().contains("HttpOnly"));
//! let second = client.post("/add").header("cookie", cookie).send().await;
//! assert_eq!(second.text(), "2");
//! # Ok(()) }
//! ```

#[cfg(feature = "config")]
pub(crate) mod config;

mod builder;
mod handle;
mod measured;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sql")]
mod sql;
mod store;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use cookie::{Cookie, CookieJar, Key, SameSite};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use self::builder::SessionsBuilder;
use self::measured::{store_url, Measured};
pub use self::memory::MemoryStore;
#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
#[cfg(feature = "sql")]
pub use self::sql::SqlStore;
pub use self::store::{Data, Record, Saved, SessionStore, StoreError};
use crate::battery::{Refused, StoreGuard};
use crate::clock::wall_ms as now_ms;
use crate::{ConfigError, Flow, Hook, HttpError, Request, Response};

/// Tries of a write before giving up (each conflict merges and tries again, after a pause of
/// up to [`BACKOFF`] doubled each time, at random: writers that met do not meet again).
const TRIES: u32 = 12;

/// The longest first pause after a conflict; it doubles, up to 64 times this.
const BACKOFF: std::time::Duration = std::time::Duration::from_millis(2);

struct Shared {
    store: Measured,
    key: Key,
    old_keys: Vec<Key>,
    cookie: String,
    host_prefix: bool,
    /// The cookie's `Max-Age` (`None`: a browser-session cookie).
    max_age: Option<cookie::time::Duration>,
    path: String,
    domain: Option<String>,
    idle_ms: u64,
    absolute_ms: u64,
}

/// The session battery; see the [module docs](self). Made by [`Sessions::builder`].
#[derive(Clone)]
pub struct Sessions {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("cookie", &self.shared.cookie)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Every `Cookie` field that may carry the session cookie (HTTP/2 clients send one field
    /// per cookie). Only a search for `name=` here (the fields are shared, not copied; no
    /// allocation without one); the values are read out and their signatures checked only if
    /// the session is used.
    fn cookie_headers(&self, req: &Request) -> Vec<HeaderValue> {
        let name = self.shared.cookie.as_bytes();
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter(|v| {
                let bytes = v.as_bytes();
                (name.len()..bytes.len())
                    .any(|eq| bytes[eq] == b'=' && &bytes[eq - name.len()..eq] == name)
            })
            .cloned()
            .collect()
    }
}

/// The values of every cookie named exactly `name` in `Cookie` fields, in order: a client can
/// be sent several (one tossed in by a sibling domain, say); the caller takes the first whose
/// signature verifies.
fn cookie_values<'h>(headers: &'h [HeaderValue], name: &'h str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name).then_some(value)
        })
}

impl Shared {
    /// The session id `raw` carries, if its signature is good (current or old secret).
    fn verify(&self, raw: &str) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(self.cookie.clone(), raw.to_owned()));
        std::iter::once(&self.key)
            .chain(&self.old_keys)
            .find_map(|key| jar.signed(key).get(&self.cookie))
            .map(|c| c.value().to_owned())
    }
}

/// What the response side needs: the request's session handle and whether it came securely.
#[derive(Debug)]
pub struct Pending {
    session: Session,
    secure: bool,
}

impl Hook for Sessions {
    type State = Pending;

    fn capabilities(&self) -> crate::battery::Capabilities {
        #[allow(unused_mut)]
        let mut caps = crate::battery::Capabilities::new()
            .kind("session")
            .inside_cors();
        #[cfg(any(feature = "redis", feature = "sql"))]
        for store in self.backends() {
            caps = caps.store(store);
        }
        #[cfg(feature = "prometheus")]
        let caps = {
            let sessions = self.clone();
            caps.metrics(move |metrics, stack, entry| {
                sessions.register_metrics(metrics, stack, entry);
            })
        };
        caps
    }

    fn on_request<'a>(&'a self, req: &'a mut Request) -> Flow<'a, Pending> {
        let session = Session {
            inner: Arc::new(Inner {
                shared: Arc::clone(&self.shared),
                used: AtomicBool::new(false),
                state: tokio::sync::Mutex::new(State {
                    cookie_headers: self.cookie_headers(req),
                    cookie_id: None,
                    loaded: Loaded::NotYet,
                    changes: BTreeMap::new(),
                    cycle: false,
                    destroy: false,
                }),
            }),
        };
        req.extensions_mut().insert(session.clone());
        let secure = req.extensions().get::<crate::Secure>().is_some();
        Flow::Continue(Pending { session, secure })
    }

    fn on_response<'a>(&'a self, pending: Pending, res: &'a mut Response) -> Flow<'a> {
        // Untouched (the common case): nothing to load, save or send.
        if !pending.session.inner.used.load(Ordering::Acquire) {
            return Flow::Continue(());
        }
        Flow::wait(async move {
            let cookie = pending.session.commit().await?;
            if let Some(cookie) = cookie {
                let set = self.set_cookie(cookie, pending.secure);
                if let Ok(value) = HeaderValue::from_str(&set) {
                    res.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            Ok::<_, HttpError>(())
        })
    }
}

/// What the response's `Set-Cookie` says.
#[derive(Debug)]
enum CookieChange {
    /// A new id.
    Issue(String),
    /// The session ended: expire the cookie.
    Expire,
}

impl Sessions {
    fn set_cookie(&self, change: CookieChange, secure: bool) -> String {
        let shared = &self.shared;
        let mut cookie = match change {
            CookieChange::Issue(id) => {
                let mut jar = CookieJar::new();
                jar.signed_mut(&shared.key)
                    .add(Cookie::new(shared.cookie.clone(), id));
                let mut c = jar
                    .get(&shared.cookie)
                    .cloned()
                    .unwrap_or_else(|| Cookie::new(shared.cookie.clone(), ""));
                if let Some(max_age) = shared.max_age {
                    c.set_max_age(max_age);
                }
                c
            }
            CookieChange::Expire => {
                let mut c = Cookie::new(shared.cookie.clone(), "");
                c.set_max_age(cookie::time::Duration::ZERO);
                c
            }
        };
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_path(shared.path.clone());
        if let Some(domain) = &shared.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.set_secure(secure || shared.host_prefix);
        cookie.to_string()
    }
}

#[derive(Debug)]
enum Loaded {
    NotYet,
    Absent,
    Found(String, Record),
}

#[derive(Debug)]
struct State {
    /// The `Cookie` fields that may hold the session cookie, read and checked on first use.
    cookie_headers: Vec<HeaderValue>,
    /// The id it carries, once checked (set when the session is loaded).
    cookie_id: Option<String>,
    loaded: Loaded,
    /// Keys set, removed or updated by this request.
    changes: BTreeMap<String, Change>,
    cycle: bool,
    destroy: bool,
}

/// Re-applies an [`Session::update`] to a key's latest stored value.
type Redo = Arc<dyn Fn(Option<&Value>) -> Option<Value> + Send + Sync>;

/// What a request did to one key.
#[derive(Clone)]
struct Change {
    /// The value as this request sees it (`None`: removed).
    value: Option<Value>,
    /// For an update: how to make the value again from another request's newer write.
    redo: Option<Redo>,
}

impl std::fmt::Debug for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Change")
            .field("value", &self.value)
            .field("redo", &self.redo.is_some())
            .finish()
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// Set on first use, so the response side of an untouched session only reads a flag.
    used: AtomicBool,
    state: tokio::sync::Mutex<State>,
}

/// A request's session, for handlers (an extractor) and later middlewares (in the request's
/// extensions). Cheap to clone; every clone is the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

fn unavailable(err: &StoreError) -> HttpError {
    tracing::error!(error = %err, "session store failed; answered 503");
    HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
}

fn new_id() -> String {
    // 128 bits from a CSPRNG (uuid's v4 with `fast-rng` draws from rand's ChaCha-based
    // thread generator), as 32 hex digits.
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(all(test, feature = "redis", feature = "sql"))]
mod tests;
